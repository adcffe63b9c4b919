import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { floats, scope, tensor } from "../lib";
import { RlhfError } from "../lib/errors";
import { resolveModel, ResolveModelOptions } from "../lib/model/hub";
import { openSafetensors, writeSafetensors } from "../lib/model/safetensors";

const ENV_KEYS = [
  "HF_HUB_CACHE",
  "HUGGINGFACE_HUB_CACHE",
  "HF_HOME",
  "XDG_CACHE_HOME",
  "HOME",
  "HF_HUB_OFFLINE",
  "TRANSFORMERS_OFFLINE",
  "HF_TOKEN",
  "HUGGING_FACE_HUB_TOKEN",
  "HF_TOKEN_PATH",
  "HF_ENDPOINT",
];
const savedEnv: Record<string, string | undefined> = {};
let tmp: string;
let count = 0;
const fresh = (name: string) => path.join(tmp, `${++count}-${name}`);

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-hub-"));
  for (const k of ENV_KEYS) savedEnv[k] = process.env[k];
});
afterAll(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  // Nothing from this machine's Hugging Face setup may leak in: a fresh, empty home.
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.HOME = fresh("home");
  fs.mkdirSync(process.env.HOME);
});

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const OTHER = "fedcba9876543210fedcba9876543210fedcba98";

/** Writes `files` (name → content) into `folder`. */
function writeFiles(folder: string, files: Record<string, string | Buffer>): void {
  fs.mkdirSync(folder, { recursive: true });
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(folder, name), content);
}

const MODEL_FILES = { "config.json": "{}", "model.safetensors": "x", "tokenizer.json": "{}" };

/**
 * A repository in the hub cache laid out as huggingface_hub lays it out: refs/<name> holding a
 * commit, snapshots/<commit>/<file> linking to blobs/<hash>.
 */
function cacheRepo(cache: string, repoId: string, refs: Record<string, string>, snapshots: Record<string, Record<string, string | Buffer>>): string {
  const repo = path.join(cache, `models--${repoId.replace("/", "--")}`);
  for (const [ref, commit] of Object.entries(refs)) writeFiles(path.dirname(path.join(repo, "refs", ref)), { [path.basename(ref)]: commit });
  for (const [commit, files] of Object.entries(snapshots)) {
    const snapshot = path.join(repo, "snapshots", commit);
    fs.mkdirSync(snapshot, { recursive: true });
    for (const [name, content] of Object.entries(files)) {
      const blob = path.join(repo, "blobs", `${commit.slice(0, 8)}-${name}`);
      writeFiles(path.dirname(blob), { [path.basename(blob)]: content });
      fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, name));
    }
  }
  return repo;
}

/** resolveModel that must fail with an RlhfError; returns its message. */
async function failure(spec: string, options: ResolveModelOptions = {}): Promise<string> {
  const err = await resolveModel(spec, options).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RlhfError);
  return (err as Error).message;
}

/** A fetch that fails the test if called: resolution must not touch the network. */
const noNetwork = (() => {
  throw new Error("unexpected network access");
}) as unknown as typeof fetch;

describe("local folders", () => {
  it("resolve to themselves, listing the model files", async () => {
    const folder = fresh("local");
    writeFiles(folder, { ...MODEL_FILES, "tokenizer_config.json": "{}", "generation_config.json": "{}", "README.md": "" });
    const resolved = await resolveModel(path.relative(process.cwd(), folder), { fetch: noNetwork });
    expect(resolved).toEqual({
      dir: folder,
      files: ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "tokenizer_config.json"],
    });
  });

  it("check every shard of a sharded model", async () => {
    const folder = fresh("local-sharded");
    const index = { weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } };
    writeFiles(folder, { "config.json": "{}", "tokenizer.json": "{}", "model.safetensors.index.json": JSON.stringify(index), "model-00001-of-00002.safetensors": "x" });
    expect(await failure(folder)).toBe(`model folder ${folder} lacks model-00002-of-00002.safetensors`);
    writeFiles(folder, { "model-00002-of-00002.safetensors": "x" });
    expect((await resolveModel(folder)).files).toEqual([
      "config.json",
      "model.safetensors.index.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "tokenizer.json",
    ]);
  });

  it("name what is missing, and weights in formats we do not read", async () => {
    const folder = fresh("pytorch");
    writeFiles(folder, { "config.json": "{}", "pytorch_model.bin": "" });
    expect(await failure(folder)).toBe(
      `model folder ${folder} lacks model.safetensors (or model.safetensors.index.json and its shards), tokenizer.json ` +
        "(it has pytorch_model.bin: only safetensors weights are read; convert them with transformers' save_pretrained)",
    );
  });

  it("reject a file, a path that does not exist, and a malformed id", async () => {
    const file = fresh("file.safetensors");
    fs.writeFileSync(file, "");
    expect(await failure(file)).toMatch(/is a file; expected a model folder or a Hugging Face model id/);
    expect(await failure("./no/such/folder/here")).toMatch(/model "\.\/no\/such\/folder\/here" is neither a folder \(.*no\/such\/folder\/here does not exist\) nor a Hugging Face model id/);
    for (const bad of ["org//name", "org/na me", "org--x/name", "-org/name", "org/name.git", "org/name@"]) {
      expect(await failure(bad)).toMatch(/is neither a folder .* nor a Hugging Face model id/);
    }
  });
});

describe("the hub cache", () => {
  it("finds refs/main's snapshot under HF_HUB_CACHE without the network", async () => {
    const cache = fresh("cache");
    process.env.HF_HUB_CACHE = cache;
    const repo = cacheRepo(cache, "org/model", { main: `${COMMIT}\n` }, { [COMMIT]: MODEL_FILES });
    const resolved = await resolveModel("org/model", { fetch: noNetwork });
    expect(resolved).toEqual({
      dir: path.join(repo, "snapshots", COMMIT),
      files: ["config.json", "model.safetensors", "tokenizer.json"],
      hub: { repoId: "org/model", revision: "main", commit: COMMIT, downloaded: [] },
    });
  });

  it("picks the cache folder as huggingface_hub does", async () => {
    const place = (env: Record<string, string>, cache: string) => {
      for (const k of ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"]) delete process.env[k];
      Object.assign(process.env, env);
      return cacheRepo(cache, "org/model", { main: COMMIT }, { [COMMIT]: MODEL_FILES });
    };
    const cases: [Record<string, string>, string][] = [
      [{ HF_HUB_CACHE: fresh("a"), HUGGINGFACE_HUB_CACHE: fresh("x"), HF_HOME: fresh("x") }, "HF_HUB_CACHE"],
      [{ HUGGINGFACE_HUB_CACHE: fresh("b"), HF_HOME: fresh("x") }, "HUGGINGFACE_HUB_CACHE"],
      [{ HF_HOME: fresh("c"), XDG_CACHE_HOME: fresh("x") }, "HF_HOME/hub"],
      [{ XDG_CACHE_HOME: fresh("d") }, "XDG_CACHE_HOME/huggingface/hub"],
      [{}, "~/.cache/huggingface/hub"],
    ];
    for (const [env, where] of cases) {
      const cache =
        where === "HF_HUB_CACHE" ? env.HF_HUB_CACHE
        : where === "HUGGINGFACE_HUB_CACHE" ? env.HUGGINGFACE_HUB_CACHE
        : where === "HF_HOME/hub" ? path.join(env.HF_HOME, "hub")
        : where === "XDG_CACHE_HOME/huggingface/hub" ? path.join(env.XDG_CACHE_HOME, "huggingface", "hub")
        : path.join(process.env.HOME as string, ".cache", "huggingface", "hub");
      const repo = place(env, cache);
      expect([where, (await resolveModel("org/model", { fetch: noNetwork })).dir]).toEqual([where, path.join(repo, "snapshots", COMMIT)]);
    }
    // The cacheDir option wins over the environment.
    const own = fresh("own");
    const repo = cacheRepo(own, "org/model", { main: OTHER }, { [OTHER]: MODEL_FILES });
    expect((await resolveModel("org/model", { cacheDir: own })).dir).toBe(path.join(repo, "snapshots", OTHER));
  });

  it("follows a branch, a tag or a PR ref, takes a commit hash directly, and ids without an org", async () => {
    const cache = fresh("revisions");
    process.env.HF_HUB_CACHE = cache;
    const repo = cacheRepo(cache, "org/model", { main: COMMIT, "refs/pr/3": OTHER, "v1.0": OTHER }, { [COMMIT]: MODEL_FILES, [OTHER]: MODEL_FILES });
    const dirOf = async (spec: string, options: ResolveModelOptions = {}) => (await resolveModel(spec, { ...options, fetch: noNetwork })).dir;
    expect(await dirOf("org/model@v1.0")).toBe(path.join(repo, "snapshots", OTHER));
    expect(await dirOf("org/model", { revision: "refs/pr/3" })).toBe(path.join(repo, "snapshots", OTHER));
    expect(await dirOf(`org/model@${COMMIT}`)).toBe(path.join(repo, "snapshots", COMMIT));
    expect((await resolveModel(`org/model@${OTHER}`)).hub).toEqual({ repoId: "org/model", revision: OTHER, commit: OTHER, downloaded: [] });
    expect(await failure("org/model@v1.0", { revision: "main" })).toBe('model "org/model@v1.0" names revision "v1.0" but the revision option is "main"');
    const gpt2 = cacheRepo(cache, "gpt2", { main: COMMIT }, { [COMMIT]: MODEL_FILES });
    expect(await dirOf("gpt2")).toBe(path.join(gpt2, "snapshots", COMMIT));
  });

  it("offline, names the repo, the files missing and every path tried", async () => {
    const cache = fresh("offline");
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_HUB_OFFLINE = "1";
    const repo = cacheRepo(cache, "org/model", { main: COMMIT }, { [COMMIT]: { "config.json": "{}", "model.safetensors": "x" } });
    // A blob deleted from under its link counts as missing.
    fs.rmSync(path.join(repo, "blobs", `${COMMIT.slice(0, 8)}-model.safetensors`));
    const snapshot = path.join(repo, "snapshots", COMMIT);
    expect(await failure("org/model", { fetch: noNetwork })).toBe(
      "cannot find model org/model (revision main) in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it.\n" +
        "Missing: model.safetensors (or model.safetensors.index.json and its shards), tokenizer.json\n" +
        "Looked in:\n" +
        `  ${path.resolve("org/model")} (no such folder)\n` +
        `  ${snapshot} (lacks model.safetensors (or model.safetensors.index.json and its shards), tokenizer.json)`,
    );
    delete process.env.HF_HUB_OFFLINE;
    process.env.TRANSFORMERS_OFFLINE = "yes";
    expect(await failure("org/other@dev", { fetch: noNetwork })).toBe(
      "cannot find model org/other (revision dev) in the Hugging Face cache, and TRANSFORMERS_OFFLINE=yes forbids downloading it.\n" +
        "Missing: config.json, model.safetensors (or model.safetensors.index.json and its shards), tokenizer.json\n" +
        "Looked in:\n" +
        `  ${path.resolve("org/other@dev")} (no such folder)\n` +
        `  ${path.join(cache, "models--org--other", "refs", "dev")} (missing)`,
    );
    expect(await failure("org/other", { offline: true })).toMatch(/and the offline option forbids downloading it/);
  });

  it("reports a ref that does not hold a commit hash", async () => {
    const cache = fresh("bad-ref");
    const repo = cacheRepo(cache, "org/model", { main: "not a hash" }, {});
    expect(await failure("org/model", { cacheDir: cache, offline: true })).toContain(`${path.join(repo, "refs", "main")} (holds "not a hash", not a commit hash)`);
  });
});

// ---------------------------------------------------------------------------------------------
// Downloads, against a stubbed hub that answers the requests @huggingface/hub makes.

interface Recorded {
  method: string;
  url: string;
  authorization: string | null;
}

/** A fake hub serving one repository's files at one commit, recording every request. */
function fakeHub(repoId: string, commit: string, files: Record<string, Buffer>, endpoint: string) {
  const requests: Recorded[] = [];
  const json = (value: unknown, status = 200) => new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json" } });
  const oid = (name: string) => Buffer.from(name).toString("hex").padEnd(64, "0").slice(0, 64);
  const stub = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    requests.push({ method: init?.method ?? "GET", url: url.href, authorization: headers.get("Authorization") });
    if (url.origin !== new URL(endpoint).origin) return json({ error: "wrong host" }, 500);
    const api = `/api/models/${repoId}`;
    if (url.pathname === `${api}/revision/main`) return json({ _id: "x", id: repoId, sha: commit, lastModified: "2024-01-01T00:00:00Z" });
    if (url.pathname === `${api}/tree/${commit}`) {
      return json(Object.entries(files).map(([p, b]) => ({ type: "file", path: p, size: b.length, oid: oid(p) })));
    }
    if (url.pathname === `${api}/paths-info/${commit}`) {
      const { paths } = JSON.parse(String(init?.body)) as { paths: string[] };
      return json(paths.map((p) => ({ type: "file", path: p, size: files[p].length, oid: oid(p), lastCommit: { id: commit, title: "x", date: "2024-01-01T00:00:00Z" } })));
    }
    const resolve = `/${repoId}/resolve/${commit}/`;
    if (url.pathname.startsWith(resolve)) {
      const body = files[decodeURIComponent(url.pathname.slice(resolve.length))];
      if (!body) return new Response("", { status: 404, headers: { "X-Error-Code": "EntryNotFound" } });
      if (headers.get("Range") === "bytes=0-0") {
        return new Response(body.subarray(0, 1), { status: 206, headers: { "Content-Range": `bytes 0-0/${body.length}`, ETag: '"e"' } });
      }
      return new Response(body, { status: 200 });
    }
    return json({ error: `unexpected ${url.pathname}` }, 500);
  };
  /** The repository files whose bytes were requested. */
  const downloaded = () =>
    requests
      .filter((r) => r.url.includes("/resolve/") && r.method === "GET")
      .map((r) => decodeURIComponent(new URL(r.url).pathname.split(`/resolve/${commit}/`)[1]))
      .filter((p, i, all) => all.indexOf(p) === i);
  return { fetch: stub as typeof fetch, requests, downloaded };
}

describe("downloading", () => {
  const endpoint = "https://hub.example";
  let shards: Record<string, Buffer>;
  let files: Record<string, Buffer>;

  beforeAll(() => {
    const folder = fresh("shards");
    scope(() => {
      writeSafetensors(path.join(folder, "a.safetensors"), { "model.embed_tokens.weight": tensor("float32", [2, 2], [1, 2, 3, 4]) });
      writeSafetensors(path.join(folder, "b.safetensors"), { "model.norm.weight": tensor("float32", [2], [5, 6]) });
    });
    shards = {
      "model-00001-of-00002.safetensors": fs.readFileSync(path.join(folder, "a.safetensors")),
      "model-00002-of-00002.safetensors": fs.readFileSync(path.join(folder, "b.safetensors")),
    };
    const index = { metadata: { total_size: 24 }, weight_map: { "model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors" } };
    files = {
      ".gitattributes": Buffer.from("*.safetensors filter=lfs"),
      "README.md": Buffer.from("# model"),
      "config.json": Buffer.from('{"model_type": "llama"}'),
      "generation_config.json": Buffer.from("{}"),
      "model.safetensors.index.json": Buffer.from(JSON.stringify(index)),
      ...shards,
      "pytorch_model.bin": Buffer.from("pickle"),
      "tokenizer.json": Buffer.from("{}"),
      "tokenizer_config.json": Buffer.from("{}"),
    };
  });

  beforeEach(() => {
    jest.spyOn(console, "debug").mockImplementation(() => undefined); // @huggingface/hub's per-file lines
  });
  afterEach(() => jest.restoreAllMocks());

  it("fetches only the model files into the cache, with HF_TOKEN, from HF_ENDPOINT", async () => {
    const cache = fresh("download");
    Object.assign(process.env, { HF_HUB_CACHE: cache, HF_TOKEN: "hf_test_token", HF_ENDPOINT: `${endpoint}/` });
    const hub = fakeHub("org/model", COMMIT, files, endpoint);
    const lines: string[] = [];
    const resolved = await resolveModel("org/model", { fetch: hub.fetch, log: (l) => lines.push(l) });

    const repo = path.join(cache, "models--org--model");
    const snapshot = path.join(repo, "snapshots", COMMIT);
    const modelFiles = [
      "model.safetensors.index.json",
      "config.json",
      "tokenizer.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "generation_config.json",
      "tokenizer_config.json",
    ];
    expect(resolved.dir).toBe(snapshot);
    expect(resolved.hub).toEqual({ repoId: "org/model", revision: "main", commit: COMMIT, downloaded: modelFiles });
    expect(hub.downloaded()).toEqual(modelFiles);
    expect(hub.requests.every((r) => r.authorization === "Bearer hf_test_token")).toBe(true);
    expect(lines).toEqual([`downloading org/model@${COMMIT.slice(0, 12)}: 6 files, 0.00 GB, into ${repo}`]);
    // huggingface_hub's layout: the ref, and snapshot links into blobs.
    expect(fs.readFileSync(path.join(repo, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(fs.readdirSync(snapshot).sort()).toEqual([...modelFiles].sort());
    for (const name of modelFiles) {
      expect(fs.lstatSync(path.join(snapshot, name)).isSymbolicLink()).toBe(true);
      expect(fs.readFileSync(path.join(snapshot, name))).toEqual(files[name]);
    }
    const reader = openSafetensors(resolved.dir);
    scope(() => expect(Array.from(floats(reader.load("model.norm.weight")))).toEqual([5, 6]));
    reader.close();

    // Complete now: the next resolution needs no network.
    expect((await resolveModel("org/model", { fetch: noNetwork })).hub?.downloaded).toEqual([]);
  });

  it("fetches only what a partial snapshot lacks", async () => {
    const cache = fresh("partial");
    cacheRepo(cache, "org/model", { main: COMMIT }, { [COMMIT]: { "config.json": "{}", "tokenizer.json": "{}", "model.safetensors.index.json": files["model.safetensors.index.json"], "model-00001-of-00002.safetensors": shards["model-00001-of-00002.safetensors"] } });
    const hub = fakeHub("org/model", COMMIT, files, endpoint);
    const resolved = await resolveModel("org/model", { cacheDir: cache, endpoint, fetch: hub.fetch, log: () => undefined });
    expect(hub.downloaded()).toEqual(["model-00002-of-00002.safetensors", "generation_config.json", "tokenizer_config.json"]);
    expect(resolved.hub?.downloaded).toEqual(["model-00002-of-00002.safetensors", "generation_config.json", "tokenizer_config.json"]);
    // No token anywhere: anonymous requests.
    expect(hub.requests.every((r) => r.authorization === null)).toBe(true);
  });

  it("reads the stored token file when HF_TOKEN is unset: HF_TOKEN_PATH, else HF_HOME/token", async () => {
    process.env.HF_HOME = fresh("hf-home");
    writeFiles(process.env.HF_HOME, { token: "hf_from_file\n" });
    const first = fakeHub("org/model", COMMIT, files, endpoint);
    await resolveModel("org/model", { endpoint, fetch: first.fetch, log: () => undefined });
    expect(first.requests.every((r) => r.authorization === "Bearer hf_from_file")).toBe(true);

    process.env.HF_TOKEN_PATH = path.join(fresh("elsewhere"), "token");
    writeFiles(path.dirname(process.env.HF_TOKEN_PATH), { token: "hf_from_path" });
    const second = fakeHub("org/model", COMMIT, files, endpoint);
    await resolveModel("org/model", { cacheDir: fresh("cache"), endpoint, fetch: second.fetch, log: () => undefined });
    expect(second.requests.every((r) => r.authorization === "Bearer hf_from_path")).toBe(true);
  });

  it("explains access errors with the repo, the files missing and the paths tried", async () => {
    const cache = fresh("denied");
    const denied = (async () => new Response(JSON.stringify({ error: "Access to model org/model is restricted" }), { status: 401, headers: { "Content-Type": "application/json" } })) as unknown as typeof fetch;
    const message = await failure("org/model", { cacheDir: cache, endpoint, fetch: denied });
    expect(message).toContain(`cannot find model org/model (revision main) locally, and downloading it from ${endpoint} failed: Access to model org/model is restricted`);
    expect(message).toContain("access denied: the repository is private or gated and no token was sent (set HF_TOKEN)");
    expect(message).toContain("Missing: config.json, model.safetensors (or model.safetensors.index.json and its shards), tokenizer.json");
    expect(message).toContain(`  ${path.join(cache, "models--org--model", "refs", "main")} (missing)`);

    const offline = (async () => {
      throw new TypeError("fetch failed");
    }) as unknown as typeof fetch;
    expect(await failure("org/model", { cacheDir: cache, endpoint, fetch: offline })).toContain("fetch failed\n(is the network reachable? set HF_HUB_OFFLINE=1 to use only the cache)");
  });

  it("refuses a repository without safetensors weights before downloading anything", async () => {
    const { "model.safetensors.index.json": _index, "model-00001-of-00002.safetensors": _a, "model-00002-of-00002.safetensors": _b, ...rest } = files;
    const hub = fakeHub("org/model", COMMIT, rest, endpoint);
    const message = await failure("org/model", { cacheDir: fresh("no-safetensors"), endpoint, fetch: hub.fetch, log: () => undefined });
    expect(message).toContain(`cannot find model org/model (revision main) on the hub: org/model at ${COMMIT} has no safetensors weights (model.safetensors or model.safetensors.index.json), only pytorch_model.bin`);
    expect(hub.downloaded()).toEqual([]);
  });
});
