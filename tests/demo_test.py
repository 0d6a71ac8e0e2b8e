"""`make demo` end to end: real processes, health over gRPC, SIGTERM, exit codes."""

import subprocess
import sys


def test_demo_starts_checks_and_stops_every_service(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "services.demo", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("video", "masks", "rank", "rerank", "dialogue"):
        assert f"{name:9s} SIGTERM -> exit code 0" in result.stdout
    assert result.stdout.count("health=SERVING") == 5
    assert "all services healthy and stopped cleanly" in result.stdout
    assert (tmp_path / "logs" / "video.log").exists()
