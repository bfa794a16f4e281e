#!/usr/bin/python3
"""The deployment recipes (deploy/) parse, and every ktf-host command line in them is the one
docs/distributed.md documents, with options ktf-host accepts.

  check_deploy.py SOURCE_DIR KTF_HOST
"""
import re
import shlex
import subprocess
import sys

import yaml

src, host = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


doc = open(f"{src}/docs/distributed.md").read()
m = re.search(r"<!-- deploy-command -->\s*```\w*\n(.*?)\n```", doc, re.S)
check(m is not None, "docs/distributed.md has no <!-- deploy-command --> block")
documented = shlex.split(m.group(1)) if m else []
check(documented[:1] == ["ktf-host"], f"the documented command is not ktf-host: {documented}")
help_text = subprocess.run([host, "--help"], capture_output=True, text=True, check=True).stdout
accepted = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.M))


def check_command(name, argv):
    check(argv[: len(documented)] == documented,
          f"{name}: command {argv} does not start with the documented {documented}")
    for a in argv[1:]:
        if a.startswith("--"):
            check(a.split("=")[0] in accepted, f"{name}: ktf-host has no option {a}")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


# Kubeflow PyTorchJob: a master and workers, each running the documented command.
job = yaml.safe_load(open(f"{src}/deploy/kubeflow-pytorchjob.yaml"))
check(job["kind"] == "PyTorchJob" and job["apiVersion"] == "kubeflow.org/v1", "PyTorchJob kind")
specs = job["spec"]["pytorchReplicaSpecs"]
check(set(specs) == {"Master", "Worker"}, f"PyTorchJob replicas {set(specs)}")
check(specs["Master"]["replicas"] == 1, "PyTorchJob: one master")
for role, spec in specs.items():
    check(spec["restartPolicy"] == "OnFailure", f"PyTorchJob {role}: restartPolicy")
    (c,) = spec["template"]["spec"]["containers"]
    check(c["name"] == "pytorch", f"PyTorchJob {role}: the operator needs the container 'pytorch'")
    check_command(f"PyTorchJob {role}", c["command"])

# Argo Workflow: rank 0 as a daemon whose IP is the rendezvous, ranks 1..N-1 after it.
wf = yaml.safe_load(open(f"{src}/deploy/argo-workflow.yaml"))
check(wf["kind"] == "Workflow" and wf["apiVersion"] == "argoproj.io/v1alpha1", "Argo kind")
templates = {t["name"]: t for t in wf["spec"]["templates"]}
params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
check(int(params["last-rank"]) == int(params["world-size"]) - 1, "Argo: last-rank = world-size - 1")
check(templates["rank0"].get("daemon") is True, "Argo: rank 0 is a daemon step")
for name in ("rank0", "rank"):
    c = templates[name]["container"]
    check_command(f"Argo {name}", c["command"])
    env = env_of(c)
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        check(var in env, f"Argo {name}: no {var}")
steps = templates["train"]["steps"]
check(steps[1][0]["arguments"]["parameters"][1]["value"] == "{{steps.rank0.ip}}",
      "Argo: the ranks' MASTER_ADDR is rank 0's pod IP")
check("retryStrategy" in templates["train"], "Argo: the job is retried")

# Slurm batch script: bash syntax, srun of the documented command with --resume auto.
slurm = open(f"{src}/deploy/slurm.sbatch").read()
check(subprocess.run(["bash", "-n", f"{src}/deploy/slurm.sbatch"]).returncode == 0, "sbatch: bash -n")
check(re.search(r"^#SBATCH --ntasks-per-node=\d+", slurm, re.M) is not None, "sbatch: tasks per node")
lines = [l.strip() for l in slurm.splitlines() if "srun" in l and "ktf-host" in l]
check(len(lines) == 1, "sbatch: one srun ktf-host line")
if lines:
    argv = shlex.split(lines[0].split("&&")[0])
    check_command("sbatch", argv[argv.index("ktf-host"):])

# Dockerfile: Debian 12, the project's own set-up and build scripts, ktf-host as entry point.
docker = open(f"{src}/deploy/Dockerfile").read()
check(re.search(r"^FROM debian:12\b", docker, re.M) is not None, "Dockerfile: FROM debian:12")
check("./scripts/setup.sh" in docker and "./scripts/build.sh" in docker,
      "Dockerfile: built by scripts/setup.sh and scripts/build.sh")
check('ENTRYPOINT ["ktf-host"]' in docker, "Dockerfile: ktf-host entry point")
for cfg in re.findall(r"/opt/ktf/configs/([\w.-]+\.json)", " ".join(documented) + docker):
    check(subprocess.run(["test", "-f", f"{src}/configs/{cfg}"]).returncode == 0,
          f"config {cfg} is not in configs/")

if failures:
    print("deploy recipes:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"deploy recipes: 4 files checked against `{' '.join(documented)}`")
