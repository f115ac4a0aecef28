"""The reliability campaign (issue 16): every fuzz target, the soaks, chaos and the scribbling peer
in every mode, with one JSON result and one table. Run it through scripts/campaign.sh, which builds
what it needs first; see docs/security.md ("How it is tested") for what each part checks.

Resumable: each finished step leaves <out>/state/<step>.json and is skipped on the next run (fuzz
steps also record their executions after every chunk, and the corpus in <out>/corpus/ persists, so
an interrupted fuzz step continues where it stopped). --fresh forgets the steps, not the corpus.
"""

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ["spsc", "mpsc", "mpmc", "broadcast"]

# What one run does. quick: every part briefly (CI); full: the numbers issue 16 asks for.
PLANS = {
    "quick": {
        "fuzz_seconds": 10,  # one chunk per target, no execution goal
        "fuzz_goal": 0,
        "fuzz_total_goal": 0,
        "soak": [("spsc", False, 1_000_000), ("mpsc", False, 1_000_000),
                 ("mpmc", False, 1_000_000), ("broadcast", False, 1_000_000),
                 ("spsc", True, 200_000), ("mpmc", True, 200_000)],
        "chaos": [(4096, 120), (1 << 16, 80)],  # (ring capacity, kills) per mode
        "scribble_seconds": 6,
        "scribble_epochs": 3,  # 2 s each: shrinks to 0, to 4 KiB and into the record area
    },
    "full": {
        "fuzz_seconds": 300,  # per chunk
        "fuzz_goal": 10_000_000,  # executions per target
        "fuzz_total_goal": 100_000_000,  # the rest goes to the fastest target
        "soak": [("spsc", False, 1_000_000_000), ("mpsc", False, 100_000_000),
                 ("mpmc", False, 100_000_000), ("broadcast", False, 100_000_000),
                 ("spsc", True, 100_000_000), ("mpmc", True, 10_000_000)],
        "chaos": [(4096, 600), (1 << 16, 400)],
        "scribble_seconds": 60,
        "scribble_epochs": 6,  # 10 s each: every shrink with raw and with typed endpoints
    },
}

# Control runs, in both plans: a fault injected on purpose (--inject) must make the driver fail,
# or its checks could not fail either.
CONTROLS = [
    ("soak", ["--mode", "spsc", "--records", "100000", "--inject", "skip"]),
    ("soak", ["--mode", "mpmc", "--records", "100000", "--inject", "skip"]),
    ("soak", ["--mode", "broadcast", "--records", "100000", "--inject", "duplicate"]),
    ("chaos", ["--mode", "mpsc", "--kills", "20", "--inject", "loss"]),
    ("chaos", ["--mode", "broadcast", "--kills", "20", "--inject", "loss"]),
]

# Rates for the first ETA, before a step has measured its own (this machine, loaded: 2 cores).
GUESS_FUZZ_RATE = 15_000.0  # executions per second
GUESS_SOAK_RATE = 2_500_000.0  # records per second (typed: a third)
GUESS_KILL_RATE = 40.0  # kills per second


def hms(seconds):
    seconds = int(max(0, seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class Campaign:
    def __init__(self, args):
        self.quick = args.quick
        self.plan = PLANS["quick" if args.quick else "full"]
        self.out = os.path.abspath(args.out or os.path.join(
            ROOT, "build-campaign-quick" if args.quick else "build-campaign"))
        self.state_dir = os.path.join(self.out, "state")
        self.log_dir = os.path.join(self.out, "logs")
        if args.fresh and os.path.isdir(self.state_dir):
            shutil.rmtree(self.state_dir)
        for d in (self.state_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
        self.driver = os.path.join(ROOT, "build-test", "tests", "flatring-campaign")
        self.only = args.only
        self.targets = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fuzz.sh"), "--list"],
                                      check=True, capture_output=True, text=True).stdout.split()
        self.steps = self.make_steps()
        self.start = time.time()

    # ---------------------------------------------------------------- the steps
    def make_steps(self):
        steps = []
        for t in self.targets:
            steps.append({"id": "fuzz-" + t, "part": "fuzz", "target": t})
        if self.plan["fuzz_total_goal"]:
            steps.append({"id": "fuzz-topup", "part": "fuzz", "target": None})
        for mode, typed, records in self.plan["soak"]:
            steps.append({"id": "soak-%s%s" % (mode, "-typed" if typed else ""), "part": "soak",
                          "mode": mode, "typed": typed, "records": records})
        for mode in MODES:
            for capacity, kills in self.plan["chaos"]:
                steps.append({"id": "chaos-%s-%d" % (mode, capacity), "part": "chaos",
                              "mode": mode, "capacity": capacity, "kills": kills})
        for mode in MODES:
            steps.append({"id": "scribble-" + mode, "part": "scribble", "mode": mode,
                          "seconds": self.plan["scribble_seconds"]})
        for part, args in CONTROLS:
            steps.append({"id": "control-%s-%s-%s" % (part, args[1], args[-1]), "part": "control",
                          "args": [part] + args})
        if self.only:
            steps = [s for s in steps if s["part"] in self.only or s["id"] in self.only]
        return steps

    def state_path(self, step):
        return os.path.join(self.state_dir, step["id"] + ".json")

    def load(self, step):
        try:
            with open(self.state_path(step)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save(self, step, state):
        tmp = self.state_path(step) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.state_path(step))

    def fuzz_rate(self, target):
        s = self.load({"id": "fuzz-" + target})
        if s and s.get("seconds"):
            return s["executions"] / s["seconds"]
        return GUESS_FUZZ_RATE

    def estimate(self, step):
        """Seconds the step still needs (measured rates where there are some)."""
        s = self.load(step) or {}
        if s.get("done"):
            return 0.0
        if step["part"] == "fuzz":
            if not self.plan["fuzz_goal"]:
                return self.plan["fuzz_seconds"] + 5
            if step["target"] is None:
                rate = max([self.fuzz_rate(t) for t in self.targets] or [GUESS_FUZZ_RATE])
                left = self.plan["fuzz_total_goal"] - len(self.targets) * self.plan["fuzz_goal"]
                return max(0, left) / rate
            left = self.plan["fuzz_goal"] - s.get("executions", 0)
            return max(0, left) / self.fuzz_rate(step["target"])
        if step["part"] == "soak":
            rate = GUESS_SOAK_RATE / (3 if step["typed"] else 1)
            return step["records"] / rate + 1
        if step["part"] == "chaos":
            return step["kills"] / GUESS_KILL_RATE + 2
        if step["part"] == "control":
            return 2
        return step["seconds"] + 2

    # ---------------------------------------------------------------- running
    def run_logged(self, step, cmd, env=None):
        """Runs cmd; its stderr goes to the terminal and the step's log. Returns (rc, stdout)."""
        log = os.path.join(self.log_dir, step["id"] + ".log")
        with open(log, "a") as lf:
            lf.write("$ %s\n" % " ".join(cmd))
            lf.flush()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, cwd=ROOT)
            out_lines = []
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            sel.register(p.stderr, selectors.EVENT_READ)
            open_streams = 2
            while open_streams:
                for key, _ in sel.select():
                    line = key.fileobj.readline()
                    if not line:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    lf.write(line)
                    if key.fileobj is p.stdout:
                        out_lines.append(line)
                    else:
                        sys.stderr.write(line)
            rc = p.wait()
            lf.write("exit %d\n" % rc)
        return rc, "".join(out_lines)

    def run_driver(self, step, args):
        rc, out = self.run_logged(step, [self.driver] + args)
        result = None
        for line in out.splitlines():
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                except ValueError:
                    pass
        if result is None:
            result = {"ok": False, "failures": ["no result (exit %d)" % rc]}
        result["ok"] = bool(result.get("ok")) and rc == 0
        result["exit"] = rc
        return result

    def fuzz_chunk(self, step, target, seconds, state):
        env = dict(os.environ, FUZZ_OUT=self.out)
        rc, out = self.run_logged(step, ["bash", "scripts/fuzz.sh", str(int(seconds)), target],
                                  env=env)
        m = re.search(r"fuzz_%s: (\d+)s, (\d+) executions, exit (\d+), (\d+) crashing" % target,
                      out)
        execs = int(m.group(2)) if m else 0
        state["executions"] = state.get("executions", 0) + execs
        state["seconds"] = state.get("seconds", 0) + (int(m.group(1)) if m else 0)
        state["chunks"] = state.get("chunks", 0) + 1
        if rc != 0:
            # Keep what crashed: fuzz.sh clears its artifacts directory on the next run.
            src = os.path.join(self.out, "artifacts", target)
            dst = os.path.join(self.out, "crashes", target)
            os.makedirs(dst, exist_ok=True)
            for name in os.listdir(src) if os.path.isdir(src) else []:
                shutil.copy(os.path.join(src, name), dst)
            state.setdefault("failures", []).append(
                "fuzz_%s exited %d (log %s, inputs in %s)" %
                (target, rc, os.path.join(self.out, "fuzz_%s.log" % target), dst))
        state["corpus_files"] = len(os.listdir(os.path.join(self.out, "corpus", target)))
        return rc == 0

    def run_fuzz(self, step, state):
        targets = [step["target"]]
        if step["target"] is None:  # the top-up: the fastest target takes what is left
            targets = sorted(self.targets, key=self.fuzz_rate, reverse=True)[:1]
        target = targets[0]
        state.update({"part": "fuzz", "target": target})
        if not self.plan["fuzz_goal"]:
            ok = self.fuzz_chunk(step, target, self.plan["fuzz_seconds"], state)
            return ok
        while True:
            if step["target"] is None:
                done = sum((self.load({"id": "fuzz-" + t}) or {}).get("executions", 0)
                           for t in self.targets) + state.get("executions", 0)
                left = self.plan["fuzz_total_goal"] - done
            else:
                left = self.plan["fuzz_goal"] - state.get("executions", 0)
            if left <= 0:
                return True
            rate = self.fuzz_rate(target)
            chunk = min(self.plan["fuzz_seconds"], max(30, 1.1 * left / rate))
            ok = self.fuzz_chunk(step, target, chunk, state)
            self.save(step, state)  # resumable between chunks
            if not ok:
                return False

    def run_step(self, step):
        state = self.load(step) or {}
        state.pop("failures", None)  # a rerun of a failed step starts its verdict afresh
        started = time.time()
        if step["part"] == "fuzz":
            ok = self.run_fuzz(step, state)
            state["ok"] = ok and not state.get("failures")
        else:
            if step["part"] == "soak":
                args = ["soak", "--mode", step["mode"], "--records", str(step["records"])]
                if step["typed"]:
                    args.append("--typed")
            elif step["part"] == "chaos":
                args = ["chaos", "--mode", step["mode"], "--kills", str(step["kills"]),
                        "--capacity", str(step["capacity"])]
            elif step["part"] == "scribble":
                args = ["scribble", "--mode", step["mode"], "--seconds", str(step["seconds"]),
                        "--epochs", str(self.plan["scribble_epochs"])]
            else:
                args = step["args"]
            state = self.run_driver(step, args)
            if step["part"] == "control":  # passes when the driver's checks failed (exit 1)
                state["ok"] = state["exit"] == 1 and bool(state.get("failures") or
                                                          state.get("missing") or
                                                          any(state.get("exit_codes", [])))
        state["wall_seconds"] = round(state.get("wall_seconds", 0) + time.time() - started, 1)
        state["done"] = True
        if state["ok"]:
            self.save(step, state)
        else:  # not done: a rerun tries it again; the failure is kept in failures.jsonl
            state["done"] = False
            self.save(step, state)
            with open(os.path.join(self.out, "failures.jsonl"), "a") as f:
                f.write(json.dumps({"step": step["id"], "at": time.strftime("%FT%TZ", time.gmtime()),
                                    "result": state}) + "\n")
        return state

    def run(self):
        print("campaign (%s): %d steps, results in %s" %
              ("quick" if self.quick else "full", len(self.steps), self.out), file=sys.stderr)
        failed = []
        for i, step in enumerate(self.steps):
            s = self.load(step)
            if s and s.get("done"):
                continue
            eta = sum(self.estimate(x) for x in self.steps[i:])
            print("[%d/%d] %s  (elapsed %s, ETA %s)" %
                  (i + 1, len(self.steps), step["id"], hms(time.time() - self.start), hms(eta)),
                  file=sys.stderr, flush=True)
            state = self.run_step(step)
            if not state["ok"]:
                failed.append(step["id"])
                print("  FAILED: %s" % step["id"], file=sys.stderr)
        self.report()
        return 1 if failed else 0

    # ---------------------------------------------------------------- results
    def report(self):
        rows, results = [], []
        totals = {"fuzz_executions": 0, "soak_records": 0, "kills": {}, "scribble_seconds": {}}
        all_ok = True
        for step in self.steps:
            s = self.load(step) or {}
            ok = bool(s.get("done")) and bool(s.get("ok"))
            all_ok = all_ok and ok
            results.append(dict(s, step=step["id"]))
            part = step["part"]
            if part == "fuzz":
                totals["fuzz_executions"] += s.get("executions", 0)
                what = "fuzz_%s%s" % (s.get("target") or "?",
                                      " (top-up)" if step["target"] is None else "")
                fig = "%s executions in %s s (%d chunk(s)), corpus %s files" % (
                    format(s.get("executions", 0), ","), s.get("seconds", 0), s.get("chunks", 0),
                    s.get("corpus_files", "?"))
            elif part == "soak":
                totals["soak_records"] += s.get("records", 0) if ok else 0
                what = "soak %s%s" % (step["mode"], " typed" if step["typed"] else "")
                fig = "%s records (%s deliveries, %s missing), %s s, %.2f M records/s, %dp/%dc" % (
                    format(s.get("records", 0), ","), format(s.get("deliveries", 0), ","),
                    s.get("missing", "?"), s.get("seconds", "?"),
                    s.get("records_per_second", 0) / 1e6, s.get("producers", 0),
                    s.get("consumers", 0))
            elif part == "chaos":
                totals["kills"][step["mode"]] = totals["kills"].get(step["mode"], 0) + s.get(
                    "kills", 0)
                what = "chaos %s %d B" % (step["mode"], step["capacity"])
                points = ", ".join("%s %d" % (k, v) for k, v in s.get("kills_by_point", {}).items()
                                   if v)
                fig = ("%s kills (%s), %s committed, %s redelivered, %s abandoned, %s lost, %s s" %
                       (s.get("kills", 0), points, format(s.get("committed", 0), ","),
                        s.get("redelivered", 0), s.get("abandoned", 0), s.get("lost", "?"),
                        s.get("seconds", "?")))
            elif part == "control":
                what = "control: %s" % " ".join(step["args"])
                fig = "the injected fault was caught (%s)" % (
                    "; ".join(s.get("failures", [])) or "missing %s, exit codes %s" %
                    (s.get("missing"), s.get("exit_codes")))
            else:
                totals["scribble_seconds"][step["mode"]] = s.get("seconds", 0)
                what = "scribble %s" % step["mode"]
                fig = ("%s s, %s epochs, %s scribbler writes, %s calls, segment_lost on both "
                       "sides after %s of %s shrinks (%s partial shrinks not touched)" %
                       (s.get("seconds", "?"), s.get("epochs", 0),
                        format(s.get("scribbler_writes", 0), ","),
                        format(s.get("victim_calls", 0), ","),
                        s.get("shrinks_segment_lost_both_sides", 0), s.get("epochs", 0),
                        s.get("partial_shrinks_not_touched", 0)))
            verdict = "pass" if ok else ("FAIL: " + "; ".join(s.get("failures", [])) if s else
                                         "not run")
            rows.append((what, fig, verdict))
        summary = {
            "plan": "quick" if self.quick else "full",
            "finished": time.strftime("%FT%TZ", time.gmtime()),
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "kernel": platform.release()},
            "wall_seconds_this_run": round(time.time() - self.start, 1),
            "totals": totals,
            "ok": all_ok,
            "steps": results,
        }
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(summary, f, indent=1)
        lines = ["| part | figures | result |", "| --- | --- | --- |"]
        lines += ["| %s | %s | %s |" % r for r in rows]
        lines.append("")
        lines.append("Totals: %s fuzz executions, %s records soaked, kills per mode %s; %s." % (
            format(totals["fuzz_executions"], ","), format(totals["soak_records"], ","),
            ", ".join("%s %d" % kv for kv in totals["kills"].items()),
            "every check passed" if all_ok else "SOME CHECKS FAILED"))
        table = "\n".join(lines) + "\n"
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write(table)
        print(table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every part briefly (CI)")
    ap.add_argument("--out", help="results, state and corpus (default build-campaign[-quick]/)")
    ap.add_argument("--fresh", action="store_true", help="forget finished steps (keeps corpus)")
    ap.add_argument("--only", nargs="+", help="parts (fuzz soak chaos scribble) or step ids")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        sys.exit(Campaign(args).run())
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
