"""`make loadtest`: start an embedded Redis and `codepool serve`, run the locust
scenarios against it headless, and write an HTML report with charts.

    python -m loadtest.run_locust [--workers 2] [--shape FlashSaleShape]
                                  [--report reports/locust.html]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from codepool.embedded import EmbeddedRedis
from loadtest.bench import ROOT_KEY, start_server, stop

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", default="FlashSaleShape", help="a class in loadtest/shapes.py")
    parser.add_argument("--report", type=Path, default=Path("reports/locust.html"))
    args = parser.parse_args()
    args.report.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="codepool-locust-") as tmp:
        data_dir = Path(tmp)
        with EmbeddedRedis(data_dir / "redis") as embedded:
            proc, port = start_server(data_dir, embedded.url, args.workers)
            try:
                env = {**os.environ, "CODEPOOL_ROOT_KEY": ROOT_KEY, "CODEPOOL_SHAPE": args.shape}
                result = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "locust",
                        "-f",
                        str(HERE / "locustfile.py"),
                        "--headless",
                        "--host",
                        f"http://127.0.0.1:{port}",
                        "--html",
                        str(args.report),
                        "--only-summary",
                    ],
                    env=env,
                    check=False,
                )
            finally:
                stop(proc)
    print(f"report: {args.report}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
