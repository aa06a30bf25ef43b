# -*- coding: utf-8 -*-
# Measured boot: the PCR 11 the build service predicts for a build, and the comparison with what the
# booted ephemeral OS read from its TPM (hw-inventory's tpm section).
from __future__ import annotations

# The ephemeral OS checks in after systemd-pcrphase extended "ready": the value hw-inventory then reads.
PHASE = "sysinit:ready"


def predicted_pcr11(build_status):
    """The build status's PCR 11 (SHA-256, hex) for PHASE, or '' when the service predicts none."""
    for value in (build_status.get("measurements") or {}).get("pcr11") or []:
        if value.get("phase") == PHASE:
            return value["sha256"]
    return ""


def with_measured_boot(report, build_id, expected):
    """The report with measured_boot added when there is a prediction and the server has a TPM; else the report as it is."""
    tpm = report.get("tpm") or {}
    if not expected or not tpm.get("present"):
        return report
    read = tpm.get("pcr11_sha256")
    measured = {"build_id": build_id, "phase": PHASE, "expected": expected, "read": read, "matched": read == expected}
    return dict(report, measured_boot=measured)
