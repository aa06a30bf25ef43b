# Measured boot: the prediction picked from a build status, and the comparison added to a report.
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.measured_boot import predicted_pcr11, with_measured_boot

A, B = "a" * 64, "b" * 64
STATUS = {"measurements": {"pcr11": [{"phase": "", "sha256": "0" * 64}, {"phase": "sysinit", "sha256": B}, {"phase": "sysinit:ready", "sha256": A}]}}


def test_the_prediction_is_the_ready_phase():
    assert predicted_pcr11(STATUS) == A


def test_no_prediction_from_a_service_without_measurements():
    assert predicted_pcr11({"state": "completed"}) == ""
    assert predicted_pcr11({"measurements": {"pcr11": [{"phase": "", "sha256": A}]}}) == ""


def test_a_tpm_reading_is_compared_and_recorded():
    report = {"tpm": {"present": True, "pcr11_sha256": A}}
    assert with_measured_boot(report, "build1", A)["measured_boot"] == {
        "build_id": "build1", "phase": "sysinit:ready", "expected": A, "read": A, "matched": True}
    assert with_measured_boot({"tpm": {"present": True, "pcr11_sha256": B}}, "build1", A)["measured_boot"]["matched"] is False
    assert "measured_boot" not in report  # the report given is not changed


def test_nothing_is_added_without_a_tpm_or_a_prediction():
    assert "measured_boot" not in with_measured_boot({"tpm": {"present": False, "pcr11_sha256": None}}, "build1", A)
    assert "measured_boot" not in with_measured_boot({"tpm": {"present": True, "pcr11_sha256": A}}, "build1", "")
    assert "measured_boot" not in with_measured_boot({}, "build1", A)
