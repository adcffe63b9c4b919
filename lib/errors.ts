/** An error a user can cause and fix (bad config, data, files, arguments); printed without a stack. */
export class RlhfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RlhfError";
  }
}
