// The official TypeScript SDK (@nodeops-createos/sandbox) on node, doing the Python drivers' work.
//
// Run as `node official_ts.mjs '<job json>'`; the job names the node_modules folder the SDK was
// installed into (benchmarks/.work/node). Same time-boxed loop as drivers/_common.py: `concurrency`
// async workers repeat one operation until `duration` seconds pass; every operation checks its output.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const job = JSON.parse(process.argv[2]);
const sdkPath = join(job.node_modules, "@nodeops-createos/sandbox/dist/index.js");
const { CreateosSandboxClient } = await import(pathToFileURL(sdkPath).href);

const EXEC_CMD = "python3";
const EXEC_ARGS = ["-c", "print(1+1)"];
// The SDK's default undici pool holds 32 connections per origin, which would queue 968 of the
// 1,000 idle streams until they time out; for that workload inject node's global fetch (no cap),
// as a user holding many streams would.
const options = { apiKey: job.api_key, baseUrl: job.base_url };
if (job.kind === "idle") options.fetch = (url, init) => globalThis.fetch(url, init);
const client = new CreateosSandboxClient(options);
const sb = await client.getSandbox(job.sandbox_id);

function checkExec(res) {
  if (res.result.stdout !== "2\n" || res.result.exit_code !== 0) {
    throw new Error(`exec mismatch: ${JSON.stringify(res)}`);
  }
}

// VmHWM, not getrusage's maxRSS: Linux carries that over execve from the parent (the harness).
function peakRssKib() {
  const m = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+)/m);
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

class Tally {
  ops = 0;
  bytes = 0;
  events = 0;
  add(nbytes = 0, events = 0) {
    this.ops += 1;
    this.bytes += nbytes;
    this.events += events;
  }
}

const ops = {
  async exec(t) {
    checkExec(await sb.runCommand(EXEC_CMD, EXEC_ARGS));
    t.add();
  },
  async lifecycle(t) {
    const box = await client.createSandbox({ shape: "s-1vcpu-256mb", rootfs: "devbox:1" });
    checkExec(await box.runCommand(EXEC_CMD, EXEC_ARGS));
    const gone = await box.destroy();
    if (gone.status !== "destroying" && gone.status !== "destroyed") throw new Error(gone.status);
    t.add();
  },
  async stream(t) {
    let nOut = 0, nErr = 0, cOut = 0, cErr = 0, code = null;
    for await (const ev of sb.streamCommand("bench", [
      "stream", String(job.size), job.recipe || "uniform", String(job.chunk || 0),
    ])) {
      switch (ev.type) {
        case "heartbeat":
          continue;
        case "stdout":
          nOut += 1;
          cOut += ev.data.length;
          break;
        case "stderr":
          nErr += 1;
          cErr += ev.data.length;
          break;
        case "exit":
          code = ev.exitCode;
          break;
      }
    }
    const e = job.expect;
    const got = [nOut, nErr, cOut, cErr, code];
    const want = [e.stdout_events, e.stderr_events, e.stdout_chars, e.stderr_chars, 0];
    if (got.join() !== want.join()) throw new Error(`stream mismatch: ${got} vs ${want}`);
    t.add(e.wire_bytes, e.frames);
  },
  async upload(t) {
    await sb.files.upload("/workspace/up.bin", payload);
    t.add(payload.length);
  },
  async download(t) {
    const buf = await sb.files.download(`/bench/${job.size}`);
    if (buf.byteLength !== job.size) throw new Error(`downloaded ${buf.byteLength} bytes`);
    t.add(buf.byteLength);
  },
};
const payload = new Uint8Array(job.kind === "upload" ? job.size : 0);

function result(t, wall, cpu, extra = {}) {
  return {
    workload: job.workload,
    ops: t.ops,
    bytes: t.bytes,
    events: t.events,
    wall_s: wall,
    cpu_s: cpu,
    peak_rss_kib: peakRssKib(),
    ...extra,
  };
}

async function runTimed(op) {
  const scratch = new Tally();
  const warm = job.warmup ?? 1;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      for (let i = 0; i < warm; i++) await op(scratch);
    }),
  );
  const t = new Tally();
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  const c0 = cpuSeconds();
  const stop = t0 + job.duration * 1000;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      do {
        await op(t);
      } while (performance.now() < stop);
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - c0;
  const faults = process.resourceUsage().minorPageFault - f0;
  return result(t, wall, cpu, { warm_ops: scratch.ops, minor_faults: faults });
}

async function runIdle() {
  // An exec stream's request goes out on the generator's first next(); the server's first
  // frame is a heartbeat, which this SDK yields, so one next() = open and answered.
  const rss0 = process.memoryUsage.rss();
  const t0 = performance.now();
  const c0 = cpuSeconds();
  const gens = await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      const g = sb.streamCommand("bench", ["idle"]);
      const first = await g.next();
      if (first.done || first.value.type !== "heartbeat") throw new Error("idle stream: no heartbeat");
      return g;
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - c0;
  const rss1 = process.memoryUsage.rss();
  await Promise.all(gens.map((g) => g.return(undefined)));
  const t = new Tally();
  t.ops = gens.length;
  return result(t, wall, cpu, { rss_per_stream_kib: (rss1 - rss0) / 1024 / gens.length });
}

const res = job.kind === "idle" ? await runIdle() : await runTimed(ops[job.kind]);
process.stdout.write(JSON.stringify(res) + "\n");
process.exit(0);
