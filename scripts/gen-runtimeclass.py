#!/usr/bin/env python3
"""runtimeclass/ is generated from the Helm chart (the one source of the
RuntimeClasses, the containerd handler fragments and the sample policies):

    scripts/gen-runtimeclass.py          # write runtimeclass/
    scripts/gen-runtimeclass.py --check  # exit 1 if runtimeclass/ differs

Renders charts/agentbox with charts/agentbox/ci/runtimeclass-values.yaml
(helm from .work/tools, scripts/install-tools.sh). Needs PyYAML (the tools venv has it).
"""
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("AGENTBOX_WORK", os.path.join(ROOT, ".work"))
HELM = os.path.join(WORK, "tools", "bin", "helm")
OUT = os.path.join(ROOT, "runtimeclass")
HEADER = (
    "# RuntimeClasses that select agentbox. Generated from charts/agentbox by\n"
    "# scripts/gen-runtimeclass.py: change the chart, not this file. Each `handler`\n"
    "# names a containerd runtime handler from containerd-config-v2.toml /\n"
    "# containerd-config-v3.toml. Pods opt in with `spec.runtimeClassName`; the\n"
    "# node agent labels nodes with the `scheduling.nodeSelector` label.\n"
)


def render():
    out = subprocess.run(
        [HELM, "template", "agentbox", os.path.join(ROOT, "charts", "agentbox"),
         "-f", os.path.join(ROOT, "charts", "agentbox", "ci", "runtimeclass-values.yaml")],
        check=True, capture_output=True, text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    files = {}
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    for key, text in cm["data"].items():
        files[key] = text
    classes = [d for d in docs if d["kind"] == "RuntimeClass"]
    for c in classes:
        c["metadata"]["labels"] = {"app.kubernetes.io/part-of": "agentbox"}
    files["runtimeclass.yaml"] = HEADER + yaml.safe_dump_all(
        classes, sort_keys=False, explicit_start=True)
    return files


def main():
    check = "--check" in sys.argv[1:]
    files = render()
    bad = []
    for name, text in sorted(files.items()):
        path = os.path.join(OUT, name)
        have = open(path).read() if os.path.exists(path) else None
        if have == text:
            continue
        if check:
            bad.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"gen-runtimeclass: wrote runtimeclass/{name}")
    extra = sorted(set(os.listdir(OUT)) - set(files))
    if check and (bad or extra):
        print(f"gen-runtimeclass: runtimeclass/ is not what charts/agentbox renders: "
              f"differs {bad}, not from the chart {extra}; run scripts/gen-runtimeclass.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
