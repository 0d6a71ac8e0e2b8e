"""`make demo` end to end: real processes, health over gRPC, video jobs over gRPC, SIGTERM, exit codes.

The test runs the demo with the tiny random video engine (`--tiny-engine`, seconds); `make demo` itself runs the
shapes-world embedded default when it is committed."""

import subprocess
import sys


def test_demo_generates_videos_and_stops_every_service(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--work-dir", str(tmp_path), "--out", str(tmp_path / "out"),
         "--tiny-engine"],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("video", "masks", "rank", "rerank", "dialogue"):
        assert f"{name:9s} SIGTERM -> exit code 0" in result.stdout
    assert result.stdout.count("health=SERVING") == 5
    assert result.stdout.count("mask IoU") == 5
    assert (
        "text      'a green triangle and a yellow diamond': this engine returns no planned layout"
        in result.stdout
    )
    assert "long      25 frames" in result.stdout  # three 9-frame clips of the tiny engine, one frame shared
    for stem in ("drawn", "edited", "composed", "bound", "long"):
        for suffix in (".mp4", "_overlay.mp4", "_side_by_side.gif"):
            assert (tmp_path / "out" / f"{stem}{suffix}").stat().st_size > 0
    assert "demo: videos generated, all services healthy and stopped cleanly" in result.stdout
    # the README picture is composed from these GIFs: one row per video, four frames each
    from PIL import Image

    from demo.picture import FRAMES_PER_ROW, ROWS, main

    assert main(["--out-dir", str(tmp_path / "out"), "-o", str(tmp_path / "demo.png")]) == 0
    with Image.open(tmp_path / "out" / "drawn_side_by_side.gif") as gif:
        cell_w, cell_h = gif.size
    with Image.open(tmp_path / "demo.png") as picture:
        assert picture.size[0] > FRAMES_PER_ROW * cell_w and picture.size[1] > len(ROWS) * cell_h
    assert (tmp_path / "logs" / "video.log").exists()
