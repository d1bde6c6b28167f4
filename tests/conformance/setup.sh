#!/usr/bin/env bash
# Installs the official SDKs used by the conformance suite (filled in by the emulator issue).
set -euo pipefail
