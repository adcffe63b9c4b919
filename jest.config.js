/** Jest runs the TypeScript tests directly through ts-jest (type-checked, CommonJS). */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
  // Kernels are multi-threaded already; one test file at a time keeps timings and memory sane
  // on a 2-core machine.
  maxWorkers: 1,
  testTimeout: 120000,
};
