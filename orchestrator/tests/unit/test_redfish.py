# The Redfish rules that do not need a BMC: which refusals pass by themselves, how a refusal is told to
# an operator, which slot takes the CD, how a server is power cycled, and the retry of a change.
import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils import redfish


class Refusal(Exception):
    """Shaped like sushy's HTTPError."""

    def __init__(self, status, message_id, detail="refused"):
        super().__init__(detail)
        self.status_code = status
        self.detail = detail
        self.body = {"code": "Base.1.15.GeneralError", "@Message.ExtendedInfo": [{"MessageId": message_id}]}


@pytest.mark.parametrize("err, transient", [
    (Refusal(400, "iLO.2.14.UnableToModifyDuringSystemPOST"), True),
    (Refusal(400, "iLO.2.14.InvalidOperationForSystemState"), True),
    (Refusal(409, "Base.1.15.ResourceInUse"), True),
    (Refusal(409, "Base.1.15.GeneralError"), True),
    (Refusal(503, "Base.1.15.GeneralError"), True),
    (Refusal(503, "Base.1.15.ServiceTemporarilyUnavailable"), True),
    (Refusal(500, "IDRAC.2.8.SYS518"), True),
    (Refusal(400, "Base.1.15.PropertyValueNotInList"), False),
    (Refusal(401, "Base.1.15.NoValidSession"), False),
    (Refusal(404, "Base.1.15.ResourceMissingAtURI"), False),
    (ValueError("not an HTTP error"), False),
])
def test_which_refusals_pass_by_themselves(err, transient):
    assert redfish.is_transient(err) is transient


def test_a_refusal_is_one_line_with_status_message_id_and_text():
    err = Refusal(400, "iLO.2.14.UnableToModifyDuringSystemPOST", "the server is in POST")
    assert redfish.describe(err) == "HTTP 400 iLO.2.14.UnableToModifyDuringSystemPOST: the server is in POST"
    assert redfish.describe(ValueError("boom")) == "boom"


def slot(path, types, can_insert=True):
    return {"path": path, "media_types": types, "can_insert": can_insert}


def test_the_cd_slot_is_the_first_that_takes_a_cd_and_can_be_filled():
    slots = [slot("/Floppy", ["Floppy", "USBStick"]), slot("/RDOC", ["CD"], can_insert=False), slot("/Cd", ["CD", "DVD"]), slot("/Cd2", ["DVD"])]
    assert redfish.choose_cd_slot(slots)["path"] == "/Cd"
    assert redfish.choose_cd_slot([slot("/Dvd", ["DVD"])])["path"] == "/Dvd"
    assert redfish.choose_cd_slot([slot("/Usb", ["USBStick"])]) is None


@pytest.mark.parametrize("reset_types, state, how", [
    (["On", "ForceOff", "PowerCycle"], "On", "PowerCycle"),
    (["On", "ForceOff"], "On", "ForceOff+On"),
    (["On", "ForceOff", "PowerCycle"], "Off", "ForceOff+On"),
])
def test_how_a_server_is_power_cycled(reset_types, state, how):
    assert redfish.choose_power_cycle(reset_types, state) == how


def bare_bmc(retries=3):
    bmc = object.__new__(redfish.Bmc)
    bmc.retries, bmc.delay, bmc.last_status = retries, 5, None
    bmc.slept = []
    bmc.sleep = bmc.slept.append
    return bmc


def test_a_change_refused_during_post_is_retried_until_it_goes_through():
    bmc = bare_bmc()
    answers = [Refusal(400, "iLO.2.14.UnableToModifyDuringSystemPOST"), Refusal(400, "iLO.2.14.UnableToModifyDuringSystemPOST"), "done"]

    def operation():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert bmc.change("Eject the media", operation) == "done"
    assert bmc.slept == [5, 5]


def test_a_change_refused_for_good_fails_at_once_naming_the_step_and_status():
    bmc = bare_bmc()

    def operation():
        raise Refusal(400, "Base.1.15.PropertyValueNotInList", '"Floppy" is not allowed')
    with pytest.raises(redfish.RedfishError) as err:
        bmc.change("Set the boot override", operation)
    assert str(err.value) == 'Set the boot override: HTTP 400 Base.1.15.PropertyValueNotInList: "Floppy" is not allowed'
    assert err.value.status == 400
    assert bmc.slept == []


def test_retries_end():
    bmc = bare_bmc(retries=2)

    def operation():
        raise Refusal(409, "Base.1.15.ResourceInUse", "busy")
    with pytest.raises(redfish.RedfishError, match="busy"):
        bmc.change("Insert the media", operation)
    assert bmc.slept == [5, 5]


def test_a_refusal_that_asks_for_transfer_protocol_type():
    asks = Refusal(400, "Base.1.15.ActionParameterMissing")
    asks.body["@Message.ExtendedInfo"][0]["RelatedProperties"] = ["#/TransferProtocolType"]
    assert redfish.needs_transfer_protocol(asks)
    other = Refusal(400, "Base.1.15.ActionParameterMissing")
    other.body["@Message.ExtendedInfo"][0]["RelatedProperties"] = ["#/Image"]
    assert not redfish.needs_transfer_protocol(other)
    assert not redfish.needs_transfer_protocol(ValueError("no body"))


def test_pem_fingerprint_is_the_certificates_sha256(tmp_path):
    # What the service publishes as certSha256 and what openssl prints for the same certificate.
    import subprocess
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    openssl = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
                             check=True, capture_output=True, text=True).stdout.split("=")[1].strip()
    assert redfish.pem_fingerprint(cert.read_text()) == openssl.replace(":", "").lower()
    with pytest.raises(ValueError):
        redfish.pem_fingerprint("not a certificate")
