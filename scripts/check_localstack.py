#!/usr/bin/env python3
"""Offline checks of localstack/, which needs Docker to run and so cannot run on our machines:
the compose file parses and has the services docs/localstack.md promises, every host path it mounts
exists (the zip only after `make build`, so it is not required), the init hooks are what
LocalStack runs: executable, with a shebang, and valid bash (`bash -n`), and deploy.py still reads
the settings it copies from template.yaml (its on-demand scaling mode).

    check_localstack.py          # with a Python that has PyYAML and boto3 (.venv-sam has both)
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "localstack" / "docker-compose.yml"
# Mounted host paths that exist only after a build.
BUILT = {"${LOGIN_ETL_ZIP_DIR:-../target/lambda/login-etl}"}


def problems():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose.get("services", {})
    for name in ("postgres", "localstack", "rows"):
        if name not in services:
            yield f"{COMPOSE.name}: no service {name}"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":/", 1)[0]
            if source in BUILT or not source.startswith("."):
                continue
            if not (COMPOSE.parent / source).exists():
                yield f"{COMPOSE.name}: service {name} mounts {source}, which does not exist"
    hooks = sorted((ROOT / "localstack" / "init").glob("*.sh"))
    if len(hooks) < 2:
        yield "localstack/init/ lacks its init hooks"
    for script in hooks + [ROOT / "localstack" / "show-rows.sh"]:
        where = script.relative_to(ROOT)
        if script in hooks and not os.access(script, os.X_OK):
            yield f"{where} is not executable (LocalStack skips it): chmod +x, and commit the mode"
        if not script.read_text().startswith("#!/bin/bash\n"):
            yield f"{where} does not start with #!/bin/bash"
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if parsed.returncode != 0:
            yield f"{where} does not parse: {parsed.stderr.strip()}"
    yield from deploy_problems()


def deploy_problems():
    """deploy.py reads template.yaml's settings as it would on a LocalStack (no call is made)."""
    spec = importlib.util.spec_from_file_location("deploy", ROOT / "localstack" / "deploy.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    try:
        settings = deploy.template_settings()
    except Exception as error:  # whatever breaks the read breaks `make demo-sqs` and the tests
        yield f"localstack/deploy.py cannot read template.yaml: {type(error).__name__}: {error}"
        return
    for name, value in settings.items():
        if name != "scaling_mode" and not (isinstance(value, int) and value > 0):
            yield f"localstack/deploy.py reads {name} = {value!r} from template.yaml, not a positive number"


def main() -> int:
    found = list(problems())
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print("localstack/: compose file, mounts, init hooks and deploy.py's settings look right (not run: no Docker here)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
