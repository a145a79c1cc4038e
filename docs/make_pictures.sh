#!/usr/bin/env bash
# Remake the README's pictures, docs/panel.png and docs/heatmap.png, from the browser tests: with
# JGM_PICTURES=1 the two tests that check those outputs in JupyterLab (light theme) also save
# them here, so a picture only changes along with what the page really shows.
# Needs what the browser tests need (bash .ci/setup); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# CI=true: a missing Chromium or Jupyter package fails the run instead of skipping both tests.
CI=true JGM_PICTURES=1 "${PYTHON:-.venv/bin/python}" -m pytest -q -p no:cacheprovider \
  "tests/test_browser.py::test_a_big_jacobian_is_drawn_as_a_heatmap[lab]" \
  "tests/test_browser.py::test_run_n_fills_the_progress_bar_and_redraws_the_loss_plot[lab]" \
  "$@"
ls -l docs/panel.png docs/heatmap.png
