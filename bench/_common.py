"""Shared pieces of the local-runtime benchmarks (local_batch.py, loop_speed.py)."""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

BATCH_YAML = """version: "1.1"
pipeline:
  name: bench
  docker_image: bodyworkml/bodywork-core:latest
  DAG: main
stages:
  main:
    executable_module_path: main.py
{requirements}    batch:
      max_completion_time_seconds: 60
      retries: 0
"""
BATCH_MAIN = 'print("hello from the stage")\n'


def project(dirname, requirements=None):
    """A one-stage batch project in `dirname` (created), with these requirements."""
    os.makedirs(dirname)
    reqs = ""
    if requirements:
        reqs = "    requirements:\n" + "".join(f"      - {r}\n" for r in requirements)
    with open(os.path.join(dirname, "bodywork.yaml"), "w") as f:
        f.write(BATCH_YAML.format(requirements=reqs))
    with open(os.path.join(dirname, "main.py"), "w") as f:
        f.write(BATCH_MAIN)
    return dirname


def timed(cmd, env, cwd=None, check=True):
    """(milliseconds, combined output) of one run of `cmd`."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = (time.perf_counter() - t0) * 1000
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}")
    return elapsed, done.stdout


def samples_of(cmd, env, runs, cwd=None):
    """Milliseconds of `runs` runs of `cmd`, after one warm-up run."""
    timed(cmd, env, cwd)
    return [timed(cmd, env, cwd)[0] for _ in range(runs)]


def median_of(cmd, env, runs, cwd=None):
    return statistics.median(samples_of(cmd, env, runs, cwd))


def quartiles(xs):
    """(q1, median, q3) of the samples."""
    xs = sorted(xs)
    if len(xs) < 4:
        m = statistics.median(xs)
        return xs[0], m, xs[-1]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[1], q[2]


def env_pythons(home):
    """bin/python of every stage environment built under this BODYWORK_HOME."""
    envs = os.path.join(home, "envs")
    return [os.path.join(envs, d, "bin", "python") for d in sorted(os.listdir(envs)) if not d.startswith(".")]


def batch_overhead(bw, env, home, scratch, runs):
    """The warm one-stage stdlib batch workflow against python alone.

    `bw` is the bodywork command (a list), `env` has BODYWORK_HOME=home.
    Builds the environment first (not timed), then interleaves workflow and
    python runs so a neighbour's load hits both alike. Returns a dict of
    millisecond samples: workflow, shim (`python3` on PATH), direct (the
    interpreter `python3` resolves to), in_env (the stage environment's
    bin/python), plus `real` (that interpreter's path).
    """
    plain = project(os.path.join(scratch, "plain"))
    timed(bw + ["setup-namespace", "bench"], env)
    timed(bw + ["workflow", "--namespace", "bench", plain], env)  # builds the env
    # `python3` may be a shim (pyenv: a shell script); time the real
    # interpreter too. The base interpreter imports its own site-packages at
    # start-up; the stage's environment does not: time that one as well.
    real = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    venv_python = env_pythons(home)[0]
    cmds = {
        "workflow": (bw + ["workflow", "--namespace", "bench", plain], None),
        "shim": (["python3", "main.py"], plain),
        "direct": ([real, "main.py"], plain),
        "in_env": ([venv_python, "main.py"], plain),
    }
    out = {k: [] for k in cmds}
    for cmd, cwd in cmds.values():
        timed(cmd, env, cwd)  # warm-up
    for _ in range(runs):
        for k, (cmd, cwd) in cmds.items():
            out[k].append(timed(cmd, env, cwd)[0])
    out["real"] = real
    return out
