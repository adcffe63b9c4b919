/** Runs a TypeScript script in a fresh Node.js process (its own memory, its own addon instance). */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as ts from "typescript";

const root = path.resolve(__dirname, "..", "..");

function typeScriptFiles(folder: string): string[] {
  return fs.readdirSync(folder, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(folder, e.name);
    return e.isDirectory() ? typeScriptFiles(p) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

let transpiledFile: string | undefined;

/** lib/ and test/helpers/ transpiled once per test file into a JSON map for register-ts.js. */
function transpiled(): string {
  if (!transpiledFile) {
    const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
    const map: Record<string, string> = {};
    for (const file of [...typeScriptFiles(path.join(root, "lib")), ...typeScriptFiles(__dirname)]) {
      map[file] = ts.transpileModule(fs.readFileSync(file, "utf8"), { compilerOptions, fileName: file }).outputText;
    }
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-ts-child-"));
    transpiledFile = path.join(folder, "transpiled.json");
    fs.writeFileSync(transpiledFile, JSON.stringify(map));
  }
  return transpiledFile;
}

/**
 * Runs `script` (a .ts file under test/helpers/) with `args` under --expose-gc; fails unless it
 * exits 0. Returns its stdout.
 */
export function runTypeScript(script: string, args: readonly string[]): string {
  const run = spawnSync(process.execPath, ["--expose-gc", "-r", path.join(__dirname, "register-ts.js"), script, ...args], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, RLHF_TEST_TRANSPILED: transpiled() },
  });
  if (run.status !== 0) {
    throw new Error(`${path.basename(script)} ${args.join(" ")} exited with ${run.status ?? run.signal}:\n${run.stderr}`);
  }
  return run.stdout;
}
