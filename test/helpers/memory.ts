/** Native-memory checks for tests. */
import { memoryStats, scope } from "../../lib";

/** Runs `fn` inside a scope and fails unless native live bytes return to where they started. */
export function expectNoLeak(fn: () => void): void {
  const before = memoryStats().liveBytes;
  scope(fn);
  expect(memoryStats().liveBytes).toBe(before);
}
