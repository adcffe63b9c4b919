// Lets a child `node -r test/helpers/register-ts.js script.ts` require TypeScript sources that the
// parent test already transpiled (ts-child.ts): the JSON file named by RLHF_TEST_TRANSPILED maps
// each .ts path to its JavaScript. The child never loads the TypeScript compiler, so its memory
// holds only what the test measures.
const fs = require("fs");

const transpiled = JSON.parse(fs.readFileSync(process.env.RLHF_TEST_TRANSPILED, "utf8"));

require.extensions[".ts"] = (module, filename) => {
  const js = transpiled[filename];
  if (js === undefined) throw new Error(`${filename} was not transpiled for this child process`);
  module._compile(js, filename);
};
