#!/usr/bin/python3
"""runc wrapper for machines whose capability bounding set lacks CAP_SYS_RESOURCE.

Docker 20.10 gives a privileged container (every kind node is one) the full capability list,
and runc then fails with "unable to apply caps: operation not permitted" when the machine's
bounding set lacks CAP_SYS_RESOURCE. This wrapper removes that one capability from the OCI
spec (the bundle's config.json, or the --process file of `runc exec`) and then runs the real
runc with the same arguments. dockerd uses it only when kindcluster.engine finds the
capability missing; elsewhere runc runs untouched.
"""
import json
import os
import sys

REAL_RUNC = os.environ.get("AI_STACK_REAL_RUNC", "/usr/sbin/runc")
DROP = "CAP_SYS_RESOURCE"


def strip(path):
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return
    proc = spec.get("process", spec)  # config.json has "process"; a --process file is one
    caps = proc.get("capabilities") or {}
    changed = False
    for key, value in caps.items():
        if isinstance(value, list) and DROP in value:
            caps[key] = [c for c in value if c != DROP]
            changed = True
    if changed:
        with open(path, "w") as f:
            json.dump(spec, f)


def main(argv):
    args = argv[1:]
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            strip(os.path.join(args[i + 1], "config.json"))
        elif arg.startswith("--bundle="):
            strip(os.path.join(arg.split("=", 1)[1], "config.json"))
        elif arg in ("--process", "-p") and i + 1 < len(args):
            strip(args[i + 1])
        elif arg.startswith("--process="):
            strip(arg.split("=", 1)[1])
    os.execv(REAL_RUNC, [REAL_RUNC] + args)


if __name__ == "__main__":
    main(sys.argv)
