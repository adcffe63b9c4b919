/**
 * Resolving `base_model` to a local folder: a folder given by path, or a Hugging Face hub id
 * ("org/name", optionally "@revision") looked up in the standard cache that Python's
 * huggingface_hub shares, downloading the missing files with @huggingface/hub when allowed.
 *
 * The cache layout (huggingface_hub's file_download.py):
 *   <cache>/models--org--name/refs/<revision>           the commit hash a branch or tag points to
 *   <cache>/models--org--name/snapshots/<commit>/<file>  links to blobs/<etag>
 * with <cache> = HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else
 * XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 *
 * A model complete in the cache is used without contacting the hub (Python's from_pretrained would
 * first ask the hub whether `main` moved; name a commit or branch to pin or refresh it).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { RlhfError } from "../errors";
import { readShardIndex, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE } from "./safetensors";

/** Files a model folder must hold besides its weights (model.safetensors, or the index and every shard). */
export const REQUIRED_MODEL_FILES = ["config.json", "tokenizer.json"] as const;

/** Files used when present: generation defaults, tokenizer settings, special tokens, chat templates. */
export const OPTIONAL_MODEL_FILES = [
  "generation_config.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "chat_template.json",
] as const;

export interface ResolveModelOptions {
  /** A branch, tag or commit hash; default "main" (or the "@revision" in the id). */
  revision?: string;
  /** Never download (default: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is 1/ON/YES/TRUE). */
  offline?: boolean;
  /** The hub cache folder (default from the environment, as above). */
  cacheDir?: string;
  /** A hub access token (default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the file HF_TOKEN_PATH or HF_HOME/token). */
  token?: string;
  /** The hub's address (default: HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** The fetch used for hub requests (a proxy, or a stub in tests). */
  fetch?: typeof fetch;
  /** Progress lines (default: standard error). */
  log?: (line: string) => void;
}

export interface ResolvedModel {
  /** The folder holding the model's files: the one given, or a snapshot in the hub cache. */
  dir: string;
  /** The model files found there: required ones, weights (every shard), optional ones present. */
  files: string[];
  /** For a hub id: the revision asked for, the commit it resolved to, the files downloaded now. */
  hub?: { repoId: string; revision: string; commit: string; downloaded: string[] };
}

/**
 * The local folder of model `spec` (a folder path or a hub id, see the module comment). Throws an
 * RlhfError naming what is missing and every path tried when the model cannot be had.
 */
export async function resolveModel(spec: string, options: ResolveModelOptions = {}): Promise<ResolvedModel> {
  const asPath = path.resolve(expandHome(spec));
  if (isDirectory(asPath)) {
    const found = checkModelFolder(asPath);
    if (found.missing.length > 0) {
      throw new RlhfError(`model folder ${asPath} lacks ${found.missing.join(", ")}${describeIncomplete(found)}`);
    }
    return { dir: asPath, files: found.present };
  }
  if (isFile(asPath)) throw new RlhfError(`model ${asPath} is a file; expected a model folder or a Hugging Face model id`);
  const id = parseHubId(spec, options.revision);
  if (!id) {
    throw new RlhfError(
      `model "${spec}" is neither a folder (${asPath} does not exist) nor a Hugging Face model id ("org/name" or "org/name@revision")`,
    );
  }
  const env = hubEnvironment(options);
  const repoFolder = path.join(env.cacheDir, `models--${id.repoId.replace("/", "--")}`);
  const tried = [`${asPath} (no such folder)`];

  let commit = localCommit(repoFolder, id.revision, tried);
  let found: FolderCheck | undefined;
  if (commit) {
    const snapshot = path.join(repoFolder, "snapshots", commit);
    found = checkModelFolder(snapshot);
    if (found.missing.length === 0) return { dir: snapshot, files: found.present, hub: { ...id, commit, downloaded: [] } };
    tried.push(`${snapshot} (${found.present.length === 0 ? "missing" : `lacks ${found.missing.join(", ")}`})`);
  }
  const failure = (why: string) =>
    new RlhfError(
      `cannot find model ${id.repoId} (revision ${id.revision}) ${why}.\n` +
        `Missing: ${(found?.missing ?? describeRequired()).join(", ")}\nLooked in:\n${tried.map((t) => `  ${t}`).join("\n")}`,
    );
  if (env.offline) throw failure(`in the Hugging Face cache, and ${env.offlineReason} forbids downloading it`);

  let downloaded: string[];
  try {
    ({ commit, downloaded } = await download(id, repoFolder, env, options));
  } catch (err) {
    if (err instanceof RlhfError) throw failure(`on the hub: ${err.message}`);
    throw failure(`locally, and downloading it from ${env.endpoint} failed: ${describeHubError(err, env)}`);
  }
  const snapshot = path.join(repoFolder, "snapshots", commit);
  found = checkModelFolder(snapshot);
  if (found.missing.length > 0) {
    tried.push(`${snapshot} (lacks ${found.missing.join(", ")} after downloading)`);
    throw failure("even after downloading it");
  }
  return { dir: snapshot, files: found.present, hub: { ...id, commit, downloaded } };
}

// ---------------------------------------------------------------------------------------------
// Hub ids and the environment

interface HubId {
  repoId: string;
  revision: string;
}

const COMMIT_HASH = /^[0-9a-f]{40}$/;

/**
 * "org/name" or "name", optionally "@revision", checked as huggingface_hub's validate_repo_id
 * does: letters, digits, "-", "_", "." in at most two parts, no "--" or "..", at most 96 characters.
 */
function parseHubId(spec: string, revisionOption: string | undefined): HubId | undefined {
  const at = spec.indexOf("@");
  const repoId = at < 0 ? spec : spec.slice(0, at);
  const inSpec = at < 0 ? undefined : spec.slice(at + 1);
  const valid =
    /^([\w.-]+\/)?[\w.-]+$/.test(repoId) &&
    !/^[.-]|[.-]$|\/[.-]|[.-]\//.test(repoId) &&
    !repoId.includes("--") &&
    !repoId.includes("..") &&
    !repoId.endsWith(".git") &&
    repoId.length <= 96;
  if (!valid || inSpec === "") return undefined;
  if (inSpec !== undefined && revisionOption !== undefined && inSpec !== revisionOption) {
    throw new RlhfError(`model "${spec}" names revision "${inSpec}" but the revision option is "${revisionOption}"`);
  }
  const revision = inSpec ?? revisionOption ?? "main";
  if (revision.split("/").includes("..")) throw new RlhfError(`model revision "${revision}" is not a branch, tag or commit`);
  return { repoId, revision };
}

interface HubEnvironment {
  cacheDir: string;
  offline: boolean;
  offlineReason: string;
  token?: string;
  /** Where the token came from, for error messages. */
  tokenSource?: string;
  endpoint: string;
}

/** The home folder as Python's expanduser finds it: $HOME, else the account's. */
function homeFolder(): string {
  return process.env.HOME || os.homedir();
}

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? path.join(homeFolder(), p.slice(1)) : p;
}

const TRUE_VALUES = new Set(["1", "ON", "YES", "TRUE"]);

function hubEnvironment(options: ResolveModelOptions): HubEnvironment {
  const env = process.env;
  const hfHome = expandHome(env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(homeFolder(), ".cache"), "huggingface"));
  const cacheDir = path.resolve(expandHome(options.cacheDir ?? env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? path.join(hfHome, "hub")));
  const offlineVar = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"].find((v) => TRUE_VALUES.has((env[v] ?? "").toUpperCase()));
  const offline = options.offline ?? offlineVar !== undefined;
  const offlineReason = options.offline ? "the offline option" : `${offlineVar}=${env[offlineVar ?? ""]}`;
  const endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  return { cacheDir, offline, offlineReason, endpoint, ...findToken(options, hfHome) };
}

function findToken(options: ResolveModelOptions, hfHome: string): { token?: string; tokenSource?: string } {
  if (options.token) return { token: options.token, tokenSource: "the token option" };
  for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]) {
    const value = process.env[name]?.trim();
    if (value) return { token: value, tokenSource: name };
  }
  const file = expandHome(process.env.HF_TOKEN_PATH ?? path.join(hfHome, "token"));
  try {
    const value = fs.readFileSync(file, "utf8").trim();
    if (value) return { token: value, tokenSource: file };
  } catch {
    // No stored token: anonymous access.
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// The cache

/** The commit a revision points to in the cache (a commit hash is its own), or undefined. */
function localCommit(repoFolder: string, revision: string, tried: string[]): string | undefined {
  if (COMMIT_HASH.test(revision)) return revision;
  const ref = path.join(repoFolder, "refs", revision);
  let commit: string;
  try {
    commit = fs.readFileSync(ref, "utf8").trim();
  } catch {
    tried.push(`${ref} (missing)`);
    return undefined;
  }
  if (!COMMIT_HASH.test(commit)) {
    tried.push(`${ref} (holds ${JSON.stringify(commit.slice(0, 50))}, not a commit hash)`);
    return undefined;
  }
  return commit;
}

interface FolderCheck {
  present: string[];
  missing: string[];
  /** Weight files in formats we do not read, found instead of safetensors. */
  otherWeights: string[];
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile(); // follows the snapshot's links; a dangling one is missing
  } catch {
    return false;
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function describeRequired(): string[] {
  return [REQUIRED_MODEL_FILES[0], `${SAFETENSORS_FILE} (or ${SAFETENSORS_INDEX_FILE} and its shards)`, ...REQUIRED_MODEL_FILES.slice(1)];
}

/** Which model files `folder` holds and which required ones it lacks. */
function checkModelFolder(folder: string): FolderCheck {
  const has = (name: string) => isFile(path.join(folder, name));
  const present: string[] = [];
  const missing: string[] = [];
  const need = (name: string) => (has(name) ? present : missing).push(name);

  need(REQUIRED_MODEL_FILES[0]);
  if (has(SAFETENSORS_FILE)) {
    present.push(SAFETENSORS_FILE);
  } else if (has(SAFETENSORS_INDEX_FILE)) {
    present.push(SAFETENSORS_INDEX_FILE);
    for (const shard of readShardIndex(path.join(folder, SAFETENSORS_INDEX_FILE)).shards) need(shard);
  } else {
    missing.push(describeRequired()[1]);
  }
  for (const name of REQUIRED_MODEL_FILES.slice(1)) need(name);
  present.push(...OPTIONAL_MODEL_FILES.filter(has));
  const otherWeights = isDirectory(folder) ? fs.readdirSync(folder).filter((n) => /\.(bin|pt|pth|gguf)$/.test(n)) : [];
  return { present, missing, otherWeights };
}

function describeIncomplete(found: FolderCheck): string {
  if (found.otherWeights.length === 0) return "";
  return ` (it has ${found.otherWeights.join(", ")}: only safetensors weights are read; convert them with transformers' save_pretrained)`;
}

// ---------------------------------------------------------------------------------------------
// Downloading

/** A hub failure with a hint at the likely cause (access, a wrong id, no network). */
function describeHubError(err: unknown, env: HubEnvironment): string {
  const status = (err as { statusCode?: unknown }).statusCode;
  const message = err instanceof Error ? err.message : String(err);
  const token = env.token ? `the token from ${env.tokenSource} was sent` : "no token was sent (set HF_TOKEN)";
  if (status === 401 || status === 403) {
    return `${message}\n(access denied: the repository is private or gated and ${token}; accept the model's license on its page and use a token with access)`;
  }
  if (status === 404) return `${message}\n(not found: check the id and revision; a private repository needs a token, and ${token})`;
  if (status === undefined) return `${message}\n(is the network reachable? set HF_HUB_OFFLINE=1 to use only the cache)`;
  return message;
}

/**
 * Downloads the model files of `id` at the commit its revision points to into the cache (the
 * files already there are kept; other files of the repository, such as other weight formats, are
 * not fetched), records refs/<revision>, and returns the commit and the files fetched. Throws an
 * RlhfError when the repository lacks a required file.
 */
async function download(
  id: HubId,
  repoFolder: string,
  env: HubEnvironment,
  options: ResolveModelOptions,
): Promise<{ commit: string; downloaded: string[] }> {
  const hub = await import("@huggingface/hub");
  const access = { hubUrl: env.endpoint, accessToken: env.token, fetch: options.fetch };
  const repo = { type: "model" as const, name: id.repoId };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  let commit = id.revision;
  if (!COMMIT_HASH.test(commit)) {
    const info = await hub.modelInfo({ ...access, name: id.repoId, revision: id.revision, additionalFields: ["sha"] });
    commit = info.sha;
    const ref = path.join(repoFolder, "refs", id.revision);
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    fs.writeFileSync(ref, commit);
  }
  const sizes = new Map<string, number>();
  for await (const entry of hub.listFiles({ ...access, repo, revision: commit })) {
    if (entry.type === "file") sizes.set(entry.path, entry.lfs?.size ?? entry.size);
  }
  const snapshot = path.join(repoFolder, "snapshots", commit);
  const downloaded: string[] = [];
  const fetchFile = async (name: string) => {
    if (isFile(path.join(snapshot, name))) return;
    await hub.downloadFileToCacheDir({ ...access, repo, path: name, revision: commit, cacheDir: path.dirname(repoFolder) });
    downloaded.push(name);
  };
  const requireRemote = (name: string) => {
    if (!sizes.has(name)) throw new RlhfError(`${id.repoId} at ${commit} has no ${name}`);
  };

  REQUIRED_MODEL_FILES.forEach(requireRemote);
  const wanted: string[] = [...REQUIRED_MODEL_FILES];
  if (sizes.has(SAFETENSORS_FILE)) {
    wanted.push(SAFETENSORS_FILE);
  } else if (sizes.has(SAFETENSORS_INDEX_FILE)) {
    // The index names the shards: fetch it first.
    await fetchFile(SAFETENSORS_INDEX_FILE);
    const { shards } = readShardIndex(path.join(snapshot, SAFETENSORS_INDEX_FILE));
    shards.forEach(requireRemote);
    wanted.push(...shards);
  } else {
    const others = [...sizes.keys()].filter((n) => /\.(bin|pt|pth|gguf)$/.test(n));
    throw new RlhfError(
      `${id.repoId} at ${commit} has no safetensors weights (${SAFETENSORS_FILE} or ${SAFETENSORS_INDEX_FILE})` +
        (others.length > 0 ? `, only ${others.slice(0, 3).join(", ")}` : ""),
    );
  }
  wanted.push(...OPTIONAL_MODEL_FILES.filter((n) => sizes.has(n)));

  const toFetch = wanted.filter((n) => !isFile(path.join(snapshot, n)));
  const bytes = toFetch.reduce((sum, n) => sum + (sizes.get(n) ?? 0), 0);
  if (toFetch.length > 0) {
    log(`downloading ${id.repoId}@${commit.slice(0, 12)}: ${toFetch.length} files, ${(bytes / 1e9).toFixed(2)} GB, into ${repoFolder}`);
  }
  for (const name of toFetch) await fetchFile(name);
  return { commit, downloaded };
}
