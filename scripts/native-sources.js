// Prints the C++ sources of the CPU addon (every .cpp under src/), one per line, for binding.gyp.
// CMakeLists.txt globs the same folder, so both builds always compile the same files.
const fs = require("fs");
const path = require("path");

function walk(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .filter((f) => f.endsWith(".cpp"))
    .sort();
}

console.log(walk("src").map((f) => f.split(path.sep).join("/")).join("\n"));
