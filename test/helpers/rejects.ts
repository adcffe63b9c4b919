/** Tables of bad inputs: one test per row, each expecting an error whose message matches. */
import { scope } from "../../lib";

export type Rejection = [name: string, call: () => unknown, message: RegExp];

/** Declares `it("rejects <name>")` for each row; tensors the calls create are freed by a scope. */
export function itRejects(cases: readonly Rejection[]): void {
  for (const [name, call, message] of cases) {
    it(`rejects ${name}`, () => {
      scope(() => expect(call).toThrow(message));
    });
  }
}
