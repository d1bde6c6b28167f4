// Drive the local emulator with the OFFICIAL TypeScript SDK (@nodeops-createos/sandbox), unchanged.
//
// Configuration comes from the environment as a user of the official SDK would set it:
// CREATEOS_SANDBOX_BASE_URL and CREATEOS_SANDBOX_API_KEY (the only key variable this SDK reads).
// CREATEOS_OTHER_API_KEY, when set, is a second tenant's key.
//
// Usage: node ts_official.mjs [scenario ...]   (default: every scenario)
// Exit status 0 = every assertion held; anything else = a mismatch (the message says which).

import { randomBytes } from "node:crypto";
import { isDeepStrictEqual, inspect } from "node:util";
import {
  CreateosSandboxApiError,
  CreateosSandboxClient,
  CreateosSandboxError,
  VERSION,
} from "@nodeops-createos/sandbox";

const SHAPE = "s-1vcpu-256mb";
const ROOTFS = "devbox:1";
const WAIT = { timeoutMs: 30_000 };
const REQ = { timeoutMs: 30_000 };

class Mismatch extends Error {}

function check(cond, what, got) {
  if (!cond) throw new Mismatch(`${what} (got ${inspect(got, { depth: 4 })})`);
}

function eq(got, want, what) {
  if (!isDeepStrictEqual(got, want)) {
    throw new Mismatch(`${what}: want ${inspect(want)}, got ${inspect(got, { depth: 4 })}`);
  }
}

/** Run fn and require a CreateosSandboxApiError with one of the given statuses. */
async function expectStatus(statuses, fn, what) {
  const allowed = Array.isArray(statuses) ? statuses : [statuses];
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof CreateosSandboxApiError)) {
      throw new Mismatch(`${what}: want HTTP ${allowed}, got ${err?.name}: ${err?.message}`);
    }
    if (!allowed.includes(err.statusCode)) {
      throw new Mismatch(`${what}: want HTTP ${allowed}, got ${err.statusCode}: ${err.message}`);
    }
    // The TS SDK only parses error bodies labelled application/json (WIRE §4 rule 7).
    check(
      err.envelope && (err.envelope.status === "fail" || err.envelope.status === "error"),
      `${what}: JSend error body with Content-Type application/json`,
      err.envelope,
    );
    check(err.requestId, `${what}: X-Request-Id on the error response`, err.requestId);
    return err;
  }
  throw new Mismatch(`${what}: want HTTP ${allowed}, the call succeeded`);
}

const unique = (prefix) => `${prefix}-${randomBytes(4).toString("hex")}`;

/** Create a sandbox, run body(sb), destroy it (cleanup errors ignored). */
async function withSandbox(box, request, body) {
  const sb = await box.createSandbox({ shape: SHAPE, rootfs: ROOTFS, ...request }, { timeoutMs: 60_000 });
  try {
    return await body(sb);
  } finally {
    await sb.destroy().catch(() => undefined);
  }
}

async function collect(iter) {
  const out = [];
  for await (const ev of iter) out.push(ev);
  return out;
}

const joined = (events, type) =>
  events
    .filter((e) => e.type === type)
    .map((e) => e.data)
    .join("");

// ------------------------------------------------------------------------------ scenarios

async function scenarioCatalog(box) {
  eq(box.baseUrl, process.env.CREATEOS_SANDBOX_BASE_URL.replace(/\/+$/, ""), "base URL from env");
  eq((await box.healthz()).up, true, "GET /healthz up");
  eq((await box.readyz()).ready, true, "GET /readyz ready");
  const shapes = await box.listShapes();
  const shape = shapes.find((s) => s.id === SHAPE);
  check(shape, `GET /v1/shapes lists ${SHAPE}`, shapes.map((s) => s.id));
  check(shape.vcpu >= 1 && shape.mem_mib >= 1, "shape vcpu/mem_mib", shape);
  const rootfs = await box.listRootfs();
  check(Array.isArray(rootfs.rootfs) && rootfs.rootfs.includes(ROOTFS), `rootfs lists ${ROOTFS}`, rootfs);
  const me = await box.whoami();
  check(me.user_id, "whoami user_id", me);
  // Open routes need no key: a client without one must still read them.
  const anon = new CreateosSandboxClient({ apiKey: "" });
  check((await anon.listShapes()).some((s) => s.id === SHAPE), "shapes without a key", null);
  const bad = new CreateosSandboxClient({ apiKey: "definitely-not-a-key" });
  await expectStatus(401, () => bad.whoami(), "whoami with an unknown key");
  await expectStatus(401, () => bad.listSandboxes(), "list with an unknown key");
  // Raw pagination envelope (WIRE §8): doubly nested, limit clamped to 500.
  const page = await box.http.request("GET", "/v1/sandboxes", { query: { limit: 1000, offset: 0 } });
  check(Array.isArray(page.data), "list payload has data[]", page);
  eq(page.pagination.limit, 500, "limit above 500 is clamped to 500");
  eq(page.pagination.offset, 0, "pagination.offset");
  eq(page.pagination.count, page.data.length, "pagination.count = items in page");
  check(page.pagination.total >= page.data.length, "pagination.total", page.pagination);
  await expectStatus(400, () => box.http.request("GET", "/v1/sandboxes", { query: { limit: -1 } }),
    "negative limit");
  eq((await box.http.request("GET", "/v1/sandboxes")).pagination.limit, 50, "default limit 50");
  eq((await box.http.request("GET", "/v1/sandboxes", { query: { limit: 0 } })).pagination.limit, 50, "limit=0 -> 50");
  const past = await box.http.request("GET", "/v1/sandboxes", { query: { offset: 1_000_000 } });
  eq([past.data, past.pagination.count, past.pagination.offset], [[], 0, 1_000_000], "offset past the end: empty page");
}

async function scenarioSandboxes(box) {
  const name = unique("conf-ts");
  const sb = await box.createSandbox({ shape: SHAPE, rootfs: ROOTFS, name, envs: { FOO: "bar" } }, { timeoutMs: 60_000 });
  let destroyed = false;
  const extra = [];
  try {
    check(sb.id, "create returns an id", sb.data);
    eq(sb.status, "running", "create status");
    eq(sb.name, name, "create echoes name");
    eq(sb.data.shape, SHAPE, "create echoes shape");
    eq(sb.data.rootfs, ROOTFS, "create echoes rootfs");
    check(sb.ip, "create returns ip", sb.data);
    check(typeof sb.data.spawn_ms === "number", "create spawn_ms is a number", sb.data);
    check(sb.data.disk_mib > 0 && sb.data.vcpu >= 1 && sb.data.mem_mib >= 1, "create sizes", sb.data);

    // WIRE §10: the create body is CreateSandboxResponse, not a SandboxView.
    const rawCreate = await box.http.request("POST", "/v1/sandboxes", { body: { shape: SHAPE }, timeoutMs: 60_000 });
    extra.push(await box.getSandbox(rawCreate.id));
    eq(rawCreate.status, "running", "raw create status (the emulator sends it)");
    check(!("created_at" in rawCreate) && !("ingress_enabled" in rawCreate), "create body has no created_at / ingress_enabled", rawCreate);
    for (const key of ["id", "ip", "shape", "vcpu", "mem_mib", "disk_mib", "spawn_ms"]) {
      check(key in rawCreate, `create body has required ${key}`, rawCreate);
    }

    const got = await box.getSandbox(sb.id);
    eq(got.id, sb.id, "GET id");
    eq(got.status, "running", "GET status");
    eq(got.name, name, "GET name");
    eq(got.data.ingress_enabled, false, "GET ingress_enabled");
    check(typeof got.data.created_at === "string" && !Number.isNaN(Date.parse(got.data.created_at)),
      "GET created_at is a date-time", got.data.created_at);
    eq(got.data.envs, ["FOO"], "GET envs = declared names only");
    check(got.data.destroyed_at === undefined || got.data.destroyed_at === null, "no destroyed_at yet", got.data);
    eq((await box.getSandboxByIP(sb.ip)).id, sb.id, "GET by-ip");

    // A second sandbox so list filters and paging have something to tell apart.
    const other = await box.createSandbox({ shape: SHAPE, rootfs: ROOTFS }, { timeoutMs: 60_000 });
    extra.push(other);
    check(other.name && other.name !== name, "auto-generated name", other.name);
    await other.pause();
    await other.waitUntilPaused(WAIT);

    const all = (await box.listSandboxes()).map((s) => s.id);
    check(all.includes(sb.id) && all.includes(other.id), "list contains both", all);
    eq(all.length, new Set(all).size, "list has no duplicates");
    const running = (await box.listSandboxes({ status: "running" })).map((s) => s.id);
    check(running.includes(sb.id) && !running.includes(other.id), "status=running filter", running);
    const paused = (await box.listSandboxes({ status: "paused" })).map((s) => s.id);
    check(paused.includes(other.id) && !paused.includes(sb.id), "status=paused filter", paused);
    eq((await box.listSandboxes({ limit: 1 })).length, 1, "list limit=1");
    const ours = (ids) => ids.filter((id) => id === sb.id || id === other.id);
    const iterated = [];
    for await (const s of box.iterateSandboxes()) iterated.push(s.id);
    eq(ours(iterated), ours(all), "iterateSandboxes yields ours in the same (creation) order");
    eq(ours(all), [sb.id, other.id], "list order = creation order");
    const at = (id) => all.indexOf(id);
    check(at(sb.id) < at(rawCreate.id) && at(rawCreate.id) < at(other.id), "list order = creation order (3)", all);
    // Explicit paging: offset walks by item count, order stable across pages.
    const full = await box.http.request("GET", "/v1/sandboxes", { query: { limit: 2, offset: 0 } });
    const p0 = await box.http.request("GET", "/v1/sandboxes", { query: { limit: 1, offset: 0 } });
    const p1 = await box.http.request("GET", "/v1/sandboxes", { query: { limit: 1, offset: 1 } });
    eq([p0.data[0].id, p1.data[0].id], full.data.map((v) => v.id), "limit=1 pages follow list order");
    eq([p1.pagination.offset, p1.pagination.limit, p1.pagination.count], [1, 1, 1], "pagination fields echo");
    await expectStatus(400, () => box.listSandboxes({ status: "bogus" }), "unknown status filter");

    await expectStatus(404, () => box.getSandbox("sb_00000000000000000000000000"), "GET unknown id");
    if (process.env.CREATEOS_OTHER_API_KEY) {
      const o = new CreateosSandboxClient({ apiKey: process.env.CREATEOS_OTHER_API_KEY });
      await expectStatus(404, () => o.getSandbox(sb.id), "GET another tenant's sandbox");
      const theirs = (await o.listSandboxes()).map((s) => s.id);
      check(!theirs.includes(sb.id), "another tenant's list does not show it", theirs);
      await expectStatus(404, () => o.http.request("POST", `/v1/sandboxes/${sb.id}/exec`, { body: { cmd: "true" } }),
        "exec in another tenant's sandbox");
      await expectStatus(404, () => o.http.request("DELETE", `/v1/sandboxes/${sb.id}`), "DELETE another tenant's sandbox");
    }

    const del = await sb.destroy();
    destroyed = true;
    eq(del.id, sb.id, "DELETE returns the id");
    check(["destroying", "destroyed"].includes(del.status), "DELETE status", del);
    await sb.waitUntilDestroyed(WAIT);
    const after = await box.getSandbox(sb.id);
    eq(after.status, "destroyed", "destroyed row stays readable");
    check(after.data.destroyed_at, "destroyed_at set", after.data);
    eq((await sb.destroy()).status, "destroyed", "repeated DELETE returns destroyed");
    const gone = (await box.listSandboxes({ status: "destroyed" })).map((s) => s.id);
    check(gone.includes(sb.id), "status=destroyed lists it", gone);
    await expectStatus(404, () => sb.runCommand("true"), "exec on a destroyed sandbox");
    await expectStatus(404, () => box.http.request("DELETE", "/v1/sandboxes/sb_00000000000000000000000000"),
      "DELETE unknown id");
  } finally {
    if (!destroyed) await sb.destroy().catch(() => undefined);
    for (const s of extra) await s.destroy().catch(() => undefined);
  }
}

async function scenarioExec(box) {
  await withSandbox(box, { envs: { FOO: "bar" } }, async (sb) => {
    let r = await sb.runCommand("echo", ["hello", "world"], REQ);
    eq(r.result, { stdout: "hello world\n", stderr: "", exit_code: 0 }, "buffered exec result (no error key)");
    check(typeof r.exec_ms === "number" && r.exec_ms >= 0, "exec_ms", r.exec_ms);
    r = await sb.runCommand("bash", ["-c", "echo out; echo err >&2; exit 3"], REQ);
    eq([r.result.stdout, r.result.stderr, r.result.exit_code], ["out\n", "err\n", 3], "non-zero exit");
    eq((await sb.runCommand("printenv", ["FOO"], REQ)).result.stdout, "bar\n", "create-time env");
    eq((await sb.runCommand("pwd", [], REQ)).result.exit_code, 0, "pwd works");
    r = await sb.runCommand("/definitely/not/a/binary", [], REQ);
    check(r.result.exit_code !== 0 || r.result.error, "missing binary fails", r.result);
    eq((await sb.sh("echo ok | tr a-z A-Z", REQ)).result.stdout, "OK\n", "sh() pipes");
    try {
      await sb.sh("exit 5", { ...REQ, label: "five" });
      throw new Mismatch("sh('exit 5') did not throw");
    } catch (err) {
      check(err instanceof CreateosSandboxError && !(err instanceof Mismatch) && /exited 5/.test(err.message),
        "sh() throws with the exit code", err.message);
    }
    await expectStatus(400, () => box.http.request("POST", `/v1/sandboxes/${sb.id}/exec`, { body: {} }),
      "exec without cmd");

    // ---- streaming
    let events = await collect(sb.streamCommand("bash", ["-c", "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; exit 4"], REQ));
    const real = events.filter((e) => e.type !== "heartbeat");
    eq(real.at(-1), { type: "exit", exitCode: 4 }, "stream ends with the exit frame");
    eq(real.filter((e) => e.type === "exit").length, 1, "exactly one exit frame");
    eq([joined(events, "stdout"), joined(events, "stderr")], ["a\nc\n", "b\n"], "stream contents");
    check(!real.some((e) => e.type === "error"), "no error frame", real);
    check(!real.some((e) => (e.type === "stdout" || e.type === "stderr") && e.data === ""),
      "no empty output frames", real);

    events = await collect(sb.streamCommand("seq", ["1", "30000"], REQ));
    eq(joined(events, "stdout"), Array.from({ length: 30000 }, (_, i) => `${i + 1}\n`).join(""),
      "large streamed stdout reassembles exactly");
    events = await collect(sb.streamCommand("sleep", ["1"], REQ));
    check(events.filter((e) => e.type === "heartbeat").length >= 1, "heartbeats during a silent 1 s command", events);
    eq(events.at(-1), { type: "exit", exitCode: 0 }, "heartbeats then exit");

    // Wire check of the stream itself (through the SDK's own transport).
    const raw = await box.http.requestRaw("POST", `/v1/sandboxes/${encodeURIComponent(sb.id)}/exec`, {
      query: { stream: true },
      body: { cmd: "echo", args: ["x"], stream: true },
    });
    eq(raw.status, 200, "stream status");
    check((raw.headers.get("content-type") ?? "").startsWith("application/x-ndjson"), "stream Content-Type", raw.headers.get("content-type"));
    const lines = (await raw.text()).split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
    eq(lines.filter((f) => !f.hb), [{ stdout: "x\n" }, { exit_code: 0 }], "raw NDJSON frames, one key each");

    // Early break: the SDK cancels the body; WIRE §11 says the server then kills the command.
    const marker = `conf-marker-${randomBytes(3).toString("hex")}`;
    const pattern = `[${marker[0]}]${marker.slice(1)}`; // matches the command, never pgrep itself
    for await (const ev of sb.streamCommand("bash", ["-c", "while :; do echo tick; sleep 0.02; done", marker], REQ)) {
      if (ev.type === "stdout") {
        eq((await sb.runCommand("pgrep", ["-f", pattern], REQ)).result.exit_code, 0, "streamed command runs");
        break;
      }
    }
    let polls = 0;
    while ((await sb.runCommand("pgrep", ["-f", pattern], REQ)).result.exit_code !== 1) {
      polls++;
      check(polls < 300, "command killed after the client disconnected", polls);
    }
    console.log(`  disconnect -> command gone after ${polls} extra poll(s)`);
    eq((await sb.runCommand("echo", ["still-ok"], REQ)).result.stdout, "still-ok\n", "usable after an abandoned stream");

    await sb.pause();
    await sb.waitUntilPaused(WAIT);
    await expectStatus(404, () => collect(sb.streamCommand("true", [], REQ)), "stream exec on a paused sandbox");
    await expectStatus(404, () => sb.runCommand("true", [], REQ), "exec on a paused sandbox");
  });
}

async function scenarioFiles(box) {
  await withSandbox(box, {}, async (sb) => {
    const blob = new Uint8Array(256 * 4096 + 4);
    for (let i = 0; i < blob.length; i++) blob[i] = i % 256;
    await sb.files.upload("/workspace/conf/deep/blob.bin", blob, REQ);
    const back = new Uint8Array(await sb.files.download("/workspace/conf/deep/blob.bin", REQ));
    eq(back.length, blob.length, "download length");
    check(Buffer.compare(Buffer.from(back), Buffer.from(blob)) === 0, "download bytes equal upload", null);
    const r = await sb.runCommand("bash", ["-c", "f=/workspace/conf/deep/blob.bin; wc -c < $f; head -c 4 $f | od -An -tx1"], REQ);
    eq(r.result.stdout.split(/\s+/).filter(Boolean), [String(blob.length), "00", "01", "02", "03"], "exec sees the upload");

    await sb.files.upload("/tmp/hello.txt", "first version, longer", REQ);
    await sb.files.upload("/tmp/hello.txt", "second", REQ);
    eq(Buffer.from(await sb.files.download("/tmp/hello.txt", REQ)).toString(), "second", "string upload overwrites");
    await sb.runCommand("bash", ["-c", "mkdir -p /tmp/made && printf 'from exec\\n' > /tmp/made/x.txt"], REQ);
    eq(Buffer.from(await sb.files.download("/tmp/made/x.txt", REQ)).toString(), "from exec\n", "download sees exec's file");

    await expectStatus(404, () => sb.files.download("/tmp/does-not-exist", REQ), "download a missing file");
    await expectStatus(400, () => sb.files.download("relative/path", REQ), "download a relative path");
    await expectStatus(400, () => sb.files.upload("/tmp/a/../b", "x", REQ), "upload with ..");
    const raw = await box.http.requestRaw("GET", `/v1/sandboxes/${encodeURIComponent(sb.id)}/files`, { query: { path: "/tmp/hello.txt" } });
    check((raw.headers.get("content-type") ?? "").startsWith("application/octet-stream"), "download Content-Type", raw.headers.get("content-type"));
    eq(await raw.text(), "second", "raw download body");
  });
}

async function scenarioLifecycle(box) {
  const extra = [];
  await withSandbox(box, {}, async (sb) => {
    try {
      await sb.files.upload("/workspace/state.txt", "before pause", REQ);
      await expectStatus(409, () => sb.resume(), "resume a running sandbox");
      await expectStatus(409, () => sb.fork(), "fork a running sandbox");
      await sb.pause();
      check(["pausing", "paused"].includes(sb.status), "pause returns pausing|paused", sb.status);
      await sb.waitUntilPaused(WAIT);
      eq(sb.status, "paused", "waitUntilPaused");
      check(sb.data.paused_at, "paused_at set", sb.data);
      await expectStatus(409, () => sb.pause(), "pause a paused sandbox");
      await expectStatus(404, () => sb.files.download("/workspace/state.txt", REQ), "download while paused");

      const child = await sb.fork({});
      extra.push(child);
      check(child.id && child.id !== sb.id, "fork returns the child", child.data);
      check(["forking", "resuming", "running"].includes(child.status), "child status", child.status);
      eq(child.data.forked_from, sb.id, "child forked_from");
      await child.waitUntilRunning(WAIT);
      eq((await box.getSandbox(sb.id)).status, "paused", "source stays paused after fork");
      eq((await child.runCommand("cat", ["/workspace/state.txt"], REQ)).result.stdout, "before pause", "child has the files");
      await child.runCommand("bash", ["-c", "echo child > /workspace/child.txt"], REQ);

      const pausedChild = await sb.fork({ start_paused: true });
      extra.push(pausedChild);
      await pausedChild.waitUntilPaused(WAIT);
      eq(pausedChild.status, "paused", "start_paused child ends paused");

      await sb.resume();
      check(["resuming", "running"].includes(sb.status), "resume returns resuming|running", sb.status);
      await sb.waitUntilRunning(WAIT);
      eq((await sb.runCommand("cat", ["/workspace/state.txt"], REQ)).result.stdout, "before pause", "files survive");
      eq((await sb.runCommand("bash", ["-c", "test -e /workspace/child.txt && echo yes || echo no"], REQ)).result.stdout,
        "no\n", "child writes stay in the child");

      // PATCH: ingress + auto-pause round trips through the returned view.
      await sb.setIngress(true);
      eq(sb.data.ingress_enabled, true, "PATCH ingress_enabled:true");
      const url = sb.previewUrl(8080);
      check(url.includes("8080") && !url.includes("<port>"), "previewUrl substitutes the port", url);
      await sb.setIngress(false);
      eq(sb.data.ingress_enabled, false, "PATCH ingress_enabled:false");
      check(!sb.data.ingress_url_template, "template removed when ingress is disabled", sb.data);
      await sb.setAutoPause(600);
      eq(sb.data.auto_pause_after_seconds, 600, "PATCH auto_pause_after_seconds");
      await sb.setAutoPause(null);
      check(sb.data.auto_pause_after_seconds == null, "disable_auto_pause clears it", sb.data);
      await expectStatus(400, () => sb.setAutoPause(5), "auto_pause below 60");

      for (const s of extra) {
        await s.destroy();
        await s.waitUntilDestroyed(WAIT);
      }
      await expectStatus(409, () => child.resume(), "resume a destroyed sandbox");
    } finally {
      for (const s of extra) await s.destroy().catch(() => undefined);
    }
  });
}

async function scenarioExtras(box) {
  await withSandbox(box, { egress: ["pypi.org", "1.1.1.1:53"] }, async (sb) => {
    eq((await sb.getEgress()).egress, ["pypi.org", "1.1.1.1:53"], "egress from create");
    eq(await sb.setEgress(["10.0.0.0/8:443"]), { id: sb.id, egress: ["10.0.0.0/8:443"] }, "PUT egress returns {id, egress}");
    const cleared = await sb.setEgress(null);
    eq(cleared.id, sb.id, "PUT egress null id");
    check(cleared.egress == null || cleared.egress.length === 0, "egress null = allow all", cleared);
    const bw = await sb.getBandwidth();
    eq(bw.id, sb.id, "bandwidth id");
    for (const k of ["quota_bytes", "used_bytes", "ingress_bytes", "remaining_bytes"]) {
      check(Number.isInteger(bw[k]), `bandwidth ${k} is an integer`, bw);
    }
    eq(typeof bw.capped, "boolean", "bandwidth capped is a boolean");
    const topped = await sb.rechargeBandwidth(1024);
    eq(topped.quota_bytes, bw.quota_bytes + 1024, "recharge adds to the quota");
    await expectStatus(400, () => sb.rechargeBandwidth(0), "recharge 0 bytes");
    const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvJ4mHkJ0x1nWvQvT9qVxkq6tF9kR2yq2w4lZ1cPpXc conf@test";
    eq(await sb.addSSHPubkeys([key, key]), { count: 1 }, "ssh-pubkeys de-duplicates");
    await expectStatus(400, () => sb.addSSHPubkeys(["not a key"]), "bad ssh key");
    const before = sb.data.disk_mib;
    eq(await sb.resize(before + 1024), { id: sb.id, disk_mib: before + 1024 }, "resize grows");
    eq((await box.getSandbox(sb.id)).data.disk_mib, before + 1024, "GET after resize");
    await expectStatus(400, () => sb.resize(before), "resize cannot shrink");
  });
}

async function scenarioResources(box) {
  const net = await box.networks.create({ name: unique("confnet") });
  check(net.id, "network id", net);
  const disk = await box.disks.create({
    name: unique("confdisk"),
    kind: "s3",
    config: { bucket: "conf-bucket", endpoint: "https://s3.example.test" },
    credentials: { access_key: "AKIACONF", secret_key: "conf-secret" },
  });
  check(disk.id && !JSON.stringify(disk).includes("conf-secret"), "disk id, credentials write-only", disk);
  try {
    check((await box.networks.list()).some((n) => n.id === net.id && n.member_count === 0), "network listed", null);
    eq((await box.disks.get(disk.name)).id, disk.id, "disk by name");
    await withSandbox(box, {}, async (sb) => {
      await sb.attachNetwork(net.id);
      const members = (await box.networks.get(net.id)).members.map((m) => m.sandbox_id);
      eq(members, [sb.id], "network members after attach");
      await expectStatus(409, () => box.networks.delete(net.id), "delete a network with members");
      await sb.detachNetwork(net.id);
      eq(await sb.attachDisk({ diskId: disk.id, mountPath: "/mnt/data" }), { id: sb.id }, "attach disk -> {id}");
      const mounts = await sb.listDisks();
      eq(mounts.map((d) => [d.disk_id, d.mount_path]), [[disk.id, "/mnt/data"]], "sandbox disks");
      check(["pending", "mounted", "error", "unmounting"].includes(mounts[0].mount_status), "mount_status", mounts[0]);
      await expectStatus(409, () => box.disks.delete(disk.id), "delete an attached disk");
      eq(await sb.detachDisk({ diskId: disk.id, mountPath: "/mnt/data" }), { detached: true }, "detach disk");
    });
  } finally {
    await box.networks.delete(net.id).catch(() => undefined);
    await box.disks.delete(disk.id).catch(() => undefined);
  }
  eq((await box.networks.list()).some((n) => n.id === net.id), false, "network deleted");

  const tpl = await box.templates.create({ name: unique("conftpl"), dockerfile: "FROM debian:bookworm\nRUN echo hi" });
  check(["pending", "building"].includes(tpl.status), "template starts pending|building", tpl);
  const frames = [];
  for await (const f of box.templates.followLogs(tpl.id, { timeoutMs: 60_000 })) frames.push(f);
  eq(frames.at(-1), { final: true, status: "ready" }, "follow ends with the final frame");
  check(frames.slice(0, -1).every((f) => typeof f.line === "string"), "log frames carry line", frames);
  eq((await box.templates.get(tpl.id)).status, "ready", "template ready");
  check((await box.templates.logs(tpl.id)).length > 0, "plain-text log", null);
  await box.templates.delete(tpl.id);
  await expectStatus(404, () => box.templates.get(tpl.id), "deleted template");
}

async function scenarioFaults(box) {
  // Only with the faults tests/test_conformance.py arms (FAULT_PLAN there), in this order.
  check((await box.whoami()).user_id, "whoami after a 503 with Retry-After: 0 (retried)", null);
  await box.listSandboxes(); // connection reset before headers: a GET, retried
  await withSandbox(box, {}, async (sb) => { // POST create answered 429 first: retried
    eq((await box.getSandbox(sb.id)).id, sb.id, "GET after an nginx-style HTML 502 (retried)");
    await expectStatus(500, () => sb.runCommand("true", [], REQ), "exec POST 500 (never retried)");
    const events = await collect(sb.streamCommand("bash", ["-c", "echo one; sleep 0.3; echo two"], REQ));
    eq(events.filter((e) => e.type !== "heartbeat"), [{ type: "stdout", data: "one\n" }],
      "truncated stream: output, then EOF, no exit");
    const blob = randomBytes(65536);
    await sb.files.upload("/tmp/slow.bin", blob, REQ);
    const back = Buffer.from(await sb.files.download("/tmp/slow.bin", REQ));
    check(back.equals(blob), "slow (dribbled) download reassembles", back.length);
    eq((await sb.runCommand("echo", ["ok"], REQ)).result.stdout, "ok\n", "exec works after the faults");
  });
}

/** One call to the emulator's fault-control routes (docs/fault-control.md), as any app could. */
async function admin(method, path, body, token = process.env.CREATEOS_LOCAL_ADMIN_TOKEN) {
  const base = process.env.CREATEOS_SANDBOX_BASE_URL.replace(/\/+$/, "");
  const res = await fetch(`${base}/__createos/${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, data: (await res.json()).data };
}

async function scenarioFaultControl(box) {
  // This process injects faults over HTTP itself; tests/test_conformance.py checks RESULT.
  const seen = {};
  await withSandbox(box, {}, async (sb) => {
    const route = `/v1/sandboxes/${sb.id}/exec`;
    const first = await admin("POST", "faults", { kind: "status", status: 500, route, method: "POST" });
    eq(first.status, 201, "fault added over HTTP");
    const err = await expectStatus(500, () => sb.runCommand("true", [], REQ), "exec answered 500");
    seen.exec500 = { status: err.statusCode, envelope: err.envelope.status };
    const second = await admin("POST", "faults", {
      kind: "status", status: 429, route, method: "POST", retry_after: 0,
    });
    seen.exec429Stdout = (await sb.runCommand("echo", ["after 429"], REQ)).result.stdout;
    seen.hits = [
      (await admin("GET", `faults/${first.data.id}`)).data.hits,
      (await admin("GET", `faults/${second.data.id}`)).data.hits,
    ];
    const counts = await admin("GET", `requests?method=POST&path=${encodeURIComponent(route)}`);
    seen.execCount = counts.data.count;
    seen.tenantKeyStatus = (await admin("GET", "faults", undefined, process.env.CREATEOS_SANDBOX_API_KEY)).status;
    seen.cleared = (await admin("DELETE", "faults")).data.cleared;
  });
  console.log(`RESULT ${JSON.stringify(seen)}`);
}

const SCENARIOS = {
  catalog: scenarioCatalog,
  sandboxes: scenarioSandboxes,
  exec: scenarioExec,
  files: scenarioFiles,
  lifecycle: scenarioLifecycle,
  extras: scenarioExtras,
  resources: scenarioResources,
  faults: scenarioFaults,
  "fault-control": scenarioFaultControl,
};

async function main(argv) {
  // "faults" only makes sense with the faults the pytest wrapper arms; "fault-control" needs the
  // admin token (CREATEOS_LOCAL_ADMIN_TOKEN).
  const names = argv.length
    ? argv
    : Object.keys(SCENARIOS).filter((n) => n !== "faults" && n !== "fault-control");
  const unknown = names.filter((n) => !(n in SCENARIOS));
  if (unknown.length) {
    console.error(`unknown scenario(s): ${unknown}; known: ${Object.keys(SCENARIOS)}`);
    return 2;
  }
  console.log(`official @nodeops-createos/sandbox ${VERSION} against ${process.env.CREATEOS_SANDBOX_BASE_URL}`);
  // No apiKey / baseUrl options: the SDK must pick both up from the environment.
  const box = new CreateosSandboxClient();
  let failed = 0;
  for (const name of names) {
    const start = performance.now();
    try {
      await SCENARIOS[name](box);
      console.log(`ok   ${name} (${((performance.now() - start) / 1000).toFixed(1)}s)`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${name}`);
      console.log(err?.stack ?? String(err));
    }
  }
  return failed ? 1 : 0;
}

// Exit explicitly: the SDK's pooled keep-alive agent would otherwise hold the process open.
process.exit(await main(process.argv.slice(2)));
