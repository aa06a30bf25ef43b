# -*- coding: utf-8 -*-
# The Redfish steps of the workflows, on OpenStack's sushy (sessions or Basic, ETags, the boot
# override's @Redfish.Settings, vendor fixes): discovery, power with waits, virtual media in a chosen
# slot, the boot override and HttpBootUri. Every change a BMC refuses for a while (during POST, just
# after an eject, while busy) is retried here, once, for all modules.
from __future__ import annotations

import hashlib
import os
import ssl
import time

try:
    import requests.adapters
    import sushy
    import urllib3
    from sushy import exceptions as sushy_exc
    from sushy.resources import constants as res_cons
    from sushy.resources.manager.virtual_media import VirtualMedia
    from sushy.resources.system import constants as sys_cons
    HAS_SUSHY = True
except ImportError:  # the module reports it with the package to install
    HAS_SUSHY = False

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils import http_boot

# Refusals that pass by themselves: iLO during POST, iLO just after another reset, a slot that still
# holds ejected media (409), a BMC that is busy or reloading (503, iDRAC's 500 SYS518).
TRANSIENT_MESSAGES = ("UnableToModifyDuringSystemPOST", "InvalidOperationForSystemState", "ResourceInUse",
                      "ServiceTemporarilyUnavailable", "SYS518")
TRANSIENT_STATUSES = (409, 503)
CD_MEDIA_TYPES = ("CD", "DVD")


# The connection options every Redfish module takes (the inventory's bmc_* names).
BMC_ARGUMENT_SPEC = dict(
    bmc_host=dict(type="str", required=True),
    bmc_username=dict(type="str", required=True),
    bmc_password=dict(type="str", required=True, no_log=True),
    bmc_resource_id=dict(type="str", default=""),
    request_timeout=dict(type="int", default=60),
    change_retries=dict(type="int", default=12),
    change_delay=dict(type="int", default=5),
)


class RedfishError(Exception):
    """A step that failed; `step` says which, `status` is the BMC's last HTTP status (or None)."""

    def __init__(self, step, message, status=None):
        super().__init__("%s: %s" % (step, message))
        self.step = step
        self.status = status


def message_ids(err):
    body = getattr(err, "body", None) or {}
    ids = [body.get("code") or ""]
    for info in body.get("@Message.ExtendedInfo") or []:
        if isinstance(info, dict):
            ids.append(info.get("MessageId") or "")
    return [i for i in ids if i]


def is_transient(err):
    """Whether a refused change is worth another try a few seconds later."""
    status = getattr(err, "status_code", None)
    if status in TRANSIENT_STATUSES:
        return True
    text = " ".join(message_ids(err)) + " " + str(getattr(err, "detail", "") or "")
    return any(m in text for m in TRANSIENT_MESSAGES)


def describe(err):
    """One line for an operator: status, MessageId, the BMC's own message."""
    status = getattr(err, "status_code", None)
    if status is None:
        return str(getattr(err, "message", None) or err)
    ids = message_ids(err)
    detail = getattr(err, "detail", None) or ""
    return "HTTP %s%s%s" % (status, " " + ids[-1] if ids else "", ": " + detail if detail else "")


def needs_transfer_protocol(err):
    """Whether an InsertMedia refusal asks for TransferProtocolType (sushy 4.3.3 only recognises it when
    error.code itself is Base.1.5.ActionParameterMissing; BMCs put it in the ExtendedInfo)."""
    body = getattr(err, "body", None) or {}
    for info in body.get("@Message.ExtendedInfo") or []:
        if isinstance(info, dict) and "ActionParameterMissing" in (info.get("MessageId") or "") \
                and "#/TransferProtocolType" in (info.get("RelatedProperties") or []):
            return True
    return False


def choose_cd_slot(slots):
    """The first slot that takes a CD or DVD and can be filled (an InsertMedia action, or PATCH).

    `slots`: [{path, media_types, can_insert}] in the BMC's order; returns the chosen one or None.
    """
    for slot in slots:
        if slot["can_insert"] and any(t in CD_MEDIA_TYPES for t in slot["media_types"]):
            return slot
    return None


def choose_power_cycle(reset_types, power_state):
    """How to restart a server: PowerCycle where offered and the server is on, else ForceOff then On."""
    if power_state == "On" and "PowerCycle" in reset_types:
        return "PowerCycle"
    return "ForceOff+On"


if HAS_SUSHY:
    class _TimeoutAdapter(requests.adapters.HTTPAdapter):
        """Gives every request a timeout (sushy 4.3.3 sends none: a hung BMC would hang the run)."""

        def __init__(self, timeout):
            super().__init__()
            self._timeout = timeout

        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self._timeout
            return super().send(request, **kwargs)


def connect(params):
    """A Bmc from a module's parameters (BMC_ARGUMENT_SPEC)."""
    return Bmc(params["bmc_host"], params["bmc_username"], params["bmc_password"], params["bmc_resource_id"],
               timeout=params["request_timeout"], retries=params["change_retries"], delay=params["change_delay"])


class Bmc:
    def __init__(self, host, username, password, system_id="", timeout=60, retries=12, delay=5,
                 sleep=time.sleep, clock=time.monotonic):
        if not HAS_SUSHY:
            raise RedfishError("connect", "the Python library sushy is missing: apt install python3-sushy")
        self.host = host
        self.timeout = timeout
        self.retries = retries
        self.delay = delay
        self.sleep = sleep
        self.clock = clock
        self.last_status = None
        # requests lets REQUESTS_CA_BUNDLE override verify=False; BMCs ship self-signed certificates.
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(name, None)
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        url = "https://%s" % host
        connector = sushy.connector.Connector(url, verify=False, response_callback=self._saw)
        connector._session.mount("https://", _TimeoutAdapter(timeout))
        try:
            self.root = sushy.Sushy(url, username=username, password=password, verify=False, connector=connector,
                                    public_connector=sushy.connector.Connector(url, verify=False))
            self.system = self.root.get_system("/redfish/v1/Systems/%s" % system_id if system_id else None)
        except Exception as err:
            raise RedfishError("Read the system", describe(err), self.last_status)

    def _saw(self, response):
        self.last_status = response.status_code

    # --- reading ------------------------------------------------------------------------------

    def refresh(self):
        self.system.refresh(force=True)
        return self.system

    @property
    def power_state(self):
        state = self.system.power_state
        return getattr(state, "value", state)

    def reset_types(self):
        """The reset types the BMC offers: the action's AllowableValues, else its @Redfish.ActionInfo
        (sushy 4.3.3 does not read ActionInfo and would then claim every type is allowed)."""
        action = (self.system.json.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
        if "ResetType@Redfish.AllowableValues" in action:
            return sorted(action["ResetType@Redfish.AllowableValues"])
        if action.get("@Redfish.ActionInfo"):
            info = self._get(action["@Redfish.ActionInfo"])
            return sorted(next((p.get("AllowableValues") or [] for p in info.get("Parameters") or [] if p.get("Name") == "ResetType"), []))
        return sorted(v.value for v in self.system.get_allowed_reset_system_values())  # sushy: all of them

    def media_slots(self):
        """Every virtual media slot: under the System where it has a collection, else its managers'."""
        collections = []
        raw = self.system.json.get("VirtualMedia") or {}
        if raw.get("@odata.id"):
            collections.append(raw["@odata.id"])
        else:
            managed_by = (self.system.json.get("Links") or {}).get("ManagedBy") or []
            managers = [m["@odata.id"] for m in managed_by if m.get("@odata.id")]
            if not managers:
                managers = [m["@odata.id"] for m in self._get("/redfish/v1/Managers").get("Members", [])]
            for manager in managers:
                link = self._get(manager).get("VirtualMedia") or {}
                if link.get("@odata.id"):
                    collections.append(link["@odata.id"])
        slots = []
        for collection in collections:
            for member in self._get(collection).get("Members", []):
                media = VirtualMedia(self.root._conn, member["@odata.id"], redfish_version=self.root.redfish_version)
                actions = media.json.get("Actions") or {}
                slots.append({
                    "path": member["@odata.id"],
                    "media_types": [getattr(t, "value", t) for t in (media.json.get("MediaTypes") or [])],
                    "can_insert": "#VirtualMedia.InsertMedia" in actions or media._allow_patch(),
                })
        return slots

    def cd_slot(self):
        slot = choose_cd_slot(self.media_slots())
        if slot is None:
            raise RedfishError("Find the virtual CD", "no virtual media slot of this BMC takes a CD or DVD")
        return slot

    def _get(self, path):
        return self.root._conn.get(path).json()

    def bios(self):
        """The BIOS resource: attributes, the pending settings' path and apply times; None without one."""
        link = (self.system.json.get("Bios") or {}).get("@odata.id")
        if not link:
            return None
        bios = self._get(link)
        settings = bios.get("@Redfish.Settings") or {}
        return {"path": link, "attributes": bios.get("Attributes") or {},
                "settings": (settings.get("SettingsObject") or {}).get("@odata.id"),
                "apply_times": settings.get("SupportedApplyTimes") or []}

    def http_boot_route(self):
        """(route, bios): HttpBootUri, a vendor's BIOS route (http_boot.BIOS_ROUTES), or None."""
        boot = self.system.json.get("Boot") or {}
        bios = None if http_boot.HTTP_BOOT_URI in boot else self.bios()
        return http_boot.route_of(boot, bios["attributes"] if bios else {}), bios

    def discover(self):
        boot = self.system.json.get("Boot") or {}
        slot = choose_cd_slot(self.media_slots())
        route, _ = self.http_boot_route()
        return {
            "system_id": self.system.identity,
            "manufacturer": self.system.json.get("Manufacturer"),
            "model": self.system.json.get("Model"),
            "power_state": self.power_state,
            "reset_types": self.reset_types(),
            "boot_targets": boot.get("BootSourceOverrideTarget@Redfish.AllowableValues") or [],
            "boot_override": {k: boot.get(k) for k in ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode")},
            "boot_enabled_values": boot.get("BootSourceOverrideEnabled@Redfish.AllowableValues") or ["Disabled", "Once", "Continuous"],
            "http_boot_uri_supported": "HttpBootUri" in boot,
            "http_boot_route": route,
            # Secure Boot as the BMC reports it (None: the BMC has no SecureBoot resource).
            "secure_boot": SecureBoot(self).state() if (self.system.json.get("SecureBoot") or {}).get("@odata.id") else None,
            "cd_slot": slot["path"] if slot else None,
        }

    # --- changing -----------------------------------------------------------------------------

    def change(self, step, operation):
        """Runs a change, retrying what the BMC refuses for a while; raises RedfishError otherwise."""
        attempts = 0
        while True:
            try:
                return operation()
            except Exception as err:
                attempts += 1
                if attempts > self.retries or not is_transient(err):
                    raise RedfishError(step, describe(err), getattr(err, "status_code", self.last_status))
                self._pause(self.delay)

    def _pause(self, seconds):
        self.sleep(seconds)

    def wait_power(self, want, timeout, step):
        """Polls PowerState until it is `want`; returns it, raises RedfishError with the last state seen."""
        deadline = self.clock() + timeout
        while True:
            try:
                state = self.refresh() and self.power_state
            except Exception as err:
                state = "unreadable (%s)" % describe(err)
            if state == want:
                return state
            if self.clock() >= deadline:
                raise RedfishError(step, "PowerState is %s, not %s, after %d s" % (state, want, timeout), self.last_status)
            self._pause(min(3, max(0.5, deadline - self.clock())))

    def reset(self, reset_type):
        self.change("Reset %s" % reset_type, lambda: self.system.reset_system(res_cons.ResetType(reset_type)))

    def power_off(self, graceful_timeout, power_timeout):
        """GracefulShutdown, and ForceOff when the OS ignores it; returns how the power went off."""
        if self.refresh() and self.power_state == "Off":
            return "already off"
        if graceful_timeout > 0 and self.power_state == "On" and "GracefulShutdown" in self.reset_types():
            self.reset("GracefulShutdown")
            try:
                self.wait_power("Off", graceful_timeout, "GracefulShutdown")
                return "GracefulShutdown"
            except RedfishError:
                pass
        if self.refresh() and self.power_state != "Off":
            self.reset("ForceOff")
        self.wait_power("Off", power_timeout, "ForceOff")
        return "ForceOff"

    def power_on(self, power_timeout):
        if self.refresh() and self.power_state == "On":
            return "already on"
        self.reset("On")
        self.wait_power("On", power_timeout, "Power on")
        return "On"

    def power_cycle(self, power_timeout):
        """PowerCycle where the BMC offers it (and the server is on), else ForceOff and On."""
        self.refresh()
        how = choose_power_cycle(self.reset_types(), self.power_state)
        if how == "PowerCycle":
            self.reset("PowerCycle")
            # The server may pass through Off too fast to be seen: On again is the end of the cycle.
            self.wait_power("On", power_timeout, "PowerCycle")
        else:
            self.power_off(0, power_timeout)
            self.power_on(power_timeout)
        return how

    def _media(self, path):
        return VirtualMedia(self.root._conn, path, redfish_version=self.root.redfish_version)

    def eject(self, path, timeout):
        """Ejects the slot and waits until it reads empty (some BMCs report it inserted for a while)."""
        media = self._media(path)
        if not media.json.get("Inserted") and not media.json.get("Image"):
            return False
        self.change("Eject the media", media.eject_media)
        self._wait_for_slot(media, "Eject the media", timeout, lambda m: not m.get("Inserted"), "empty")
        return True

    def _wait_for_slot(self, media, step, timeout, ready, wanted):
        """Reads the slot every second until ready(its JSON), for at most `timeout` seconds."""
        deadline = self.clock() + timeout
        while True:
            media.refresh(force=True)
            if ready(media.json):
                return
            if self.clock() >= deadline:
                raise RedfishError(step, "the slot does not read %s after %d s (it reads %s, inserted %s)"
                                   % (wanted, timeout, media.json.get("Image"), media.json.get("Inserted")), self.last_status)
            self._pause(1)

    def insert(self, path, image):
        media = self._media(path)

        def attempt():
            try:
                media.insert_media(image, inserted=True, write_protected=True)
            except sushy_exc.HTTPError as err:
                if not needs_transfer_protocol(err):
                    raise
                self.root._conn.post(media._actions.insert_media.target_uri,
                                     data={"Image": image, "TransferProtocolType": image.split(":", 1)[0].upper()})
        self.change("Insert the media", attempt)
        # Some BMCs answer 202 with a task and attach the image later: boot only once it reads inserted.
        self._wait_for_slot(media, "Insert the media", self.timeout,
                            lambda m: m.get("Inserted") and m.get("Image") == image, "%s inserted" % image)

    def set_boot(self, target, enabled, mode="UEFI"):
        """Sets the override; returns the BootSourceOverrideEnabled used: Continuous becomes Once where
        the BMC allows only Once and Disabled (Lenovo XCC), so every boot sets it again."""
        allowed = (self.refresh().json.get("Boot") or {}).get("BootSourceOverrideEnabled@Redfish.AllowableValues")
        if enabled == "Continuous" and allowed and "Continuous" not in allowed:
            enabled = "Once"
        used = enabled
        # sushy takes its own enums; a value it does not know is the BMC's business to refuse.
        target = sys_cons.BootSource(target) if target else None
        enabled = sys_cons.BootSourceOverrideEnabled(enabled) if enabled else None
        mode = sys_cons.BootSourceOverrideMode(mode) if mode else None
        self.change("Set the boot override", lambda: self.refresh().set_system_boot_options(target=target, enabled=enabled, mode=mode))
        return used

    def set_http_boot(self, uri, address=None):
        """Makes the next UefiHttp boot fetch `uri`: Boot.HttpBootUri where the BMC has it, else the
        vendor's BIOS attributes, committed to the next reset (with a static address when given).
        Returns the route taken."""
        route, bios = self.http_boot_route()
        if route == http_boot.HTTP_BOOT_URI:
            self.set_http_boot_uri(uri)
            return route
        if route is None:
            raise RedfishError("Set the HTTP boot URI", http_boot.LACKS + ": use boot_method cd or auto")
        if not bios["settings"]:
            raise RedfishError("Set the HTTP boot URI", "the BIOS has no @Redfish.Settings resource to change")
        payload = {"Attributes": http_boot.bios_attributes(route, uri, address)}
        # iDRAC applies pending settings only with a job: the apply time makes one for the next reset.
        if "OnReset" in bios["apply_times"]:
            payload["@Redfish.SettingsApplyTime"] = {"ApplyTime": "OnReset"}

        def patch():
            # With the settings resource's ETag: some BMCs refuse a PATCH without If-Match (428).
            etag = self.root._conn.get(bios["settings"]).headers.get("ETag")
            self.root._conn.patch(bios["settings"], data=payload, etag=etag)
        self.change("Set the HTTP boot URI in the BIOS settings", patch)
        return route

    def set_http_boot_uri(self, uri):
        """HttpBootUri (sushy 4.3.3 has no parameter for it): a PATCH of the System with its ETag."""
        if "HttpBootUri" not in (self.refresh().json.get("Boot") or {}):
            raise RedfishError("Set HttpBootUri", "this BMC has no Boot.HttpBootUri: use boot_method cd")
        self.change("Set HttpBootUri", lambda: self.root._conn.patch(self.system.path, data={"Boot": {"HttpBootUri": uri}},
                                                                      etag=self.refresh()._get_etag()))


class SecureBoot:
    """A System's Secure Boot through Redfish: the switch, and db's certificates where the BMC offers
    SecureBootDatabases (Dell iDRAC; HPE iLO and Lenovo XCC do not)."""

    def __init__(self, bmc):
        self.bmc = bmc
        link = (bmc.refresh().json.get("SecureBoot") or {}).get("@odata.id")
        if not link:
            raise RedfishError("Read Secure Boot", "this BMC has no Redfish SecureBoot resource: turn Secure Boot on in the "
                               "server's firmware setup and enroll the certificate by hand, or use secure_boot: as-is")
        self.path = link

    def state(self):
        sb = self.bmc._get(self.path)
        return {"enabled": bool(sb.get("SecureBootEnable")), "current_boot": sb.get("SecureBootCurrentBoot"),
                "mode": sb.get("SecureBootMode")}

    def certificates_path(self):
        databases = (self.bmc._get(self.path).get("SecureBootDatabases") or {}).get("@odata.id")
        if not databases:
            return None
        for member in self.bmc._get(databases).get("Members") or []:
            db = self.bmc._get(member["@odata.id"])
            if db.get("DatabaseId", db.get("Id")) == "db":
                return (db.get("Certificates") or {}).get("@odata.id")
        return None

    def enrolled(self, certificates, fingerprint):
        for member in self.bmc._get(certificates).get("Members") or []:
            cert = self.bmc._get(member["@odata.id"])
            if cert.get("CertificateType", "PEM") == "PEM" and cert.get("CertificateString") \
                    and pem_fingerprint(cert["CertificateString"]) == fingerprint:
                return True
        return False

    def enroll(self, certificates, pem):
        self.bmc.change("Enroll the certificate in db",
                        lambda: self.bmc.root._conn.post(certificates, data={"CertificateString": pem, "CertificateType": "PEM"}))

    def set_enabled(self, enabled):
        def patch():
            etag = self.bmc.root._conn.get(self.path).headers.get("ETag")
            self.bmc.root._conn.patch(self.path, data={"SecureBootEnable": enabled}, etag=etag)
        self.bmc.change("Set SecureBootEnable", patch)


def pem_fingerprint(pem):
    """SHA-256 of a PEM certificate's DER, lower-case hex (what the service publishes as certSha256)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")).hexdigest()


def run(module, action):
    """Connects with the module's parameters, runs action(bmc) -> result dict, and exits the module.

    Every result carries the BMC's power state and last HTTP status (the closing line of a failed
    server names both) and `waited`: seconds spent waiting on the BMC (the run's timing split).
    """
    started = time.monotonic()
    bmc = None
    try:
        bmc = connect(module.params)
        result = action(bmc)
    except Exception as err:
        if not isinstance(err, RedfishError):  # a BMC answer sushy could not read: say so, no traceback
            err = RedfishError(module._name.split(".")[-1], "%s: %s" % (type(err).__name__, describe(err)),
                               bmc.last_status if bmc else None)
        extra = {}
        if bmc is not None:
            try:
                extra["power_state"] = bmc.refresh() and bmc.power_state
            except Exception:
                pass
        module.fail_json(msg=str(err), step=err.step, status=err.status if err.status is not None else "none",
                         waited=round(time.monotonic() - started, 2), **extra)
    result.setdefault("power_state", bmc.power_state)
    result.update(status=bmc.last_status, waited=round(time.monotonic() - started, 2))
    module.exit_json(**result)


def clear_override(bmc):
    """BootSourceOverrideEnabled Disabled, or where the BMC refuses that (sushy-tools over libvirt
    answers 500), target None with Once: either leaves the server booting as it would on its own."""
    try:
        bmc.set_boot(None, "Disabled", None)
    except RedfishError as disabled:
        try:
            bmc.set_boot("None", "Once", None)
        except RedfishError as none:
            raise RedfishError("Clear the boot override", "Disabled: %s; None with Once: %s" % (disabled, none), none.status)


def restore_secure_boot(bmc, enabled):
    sb = SecureBoot(bmc)
    if sb.state()["enabled"] != enabled:
        sb.set_enabled(enabled)


def give_back(bmc, graceful_timeout, power_timeout, eject_timeout, secure_boot_enabled=None):
    """Empties the CD, clears the boot override (and HttpBootUri), sets Secure Boot back as found
    (`secure_boot_enabled`, when this run changed it) and powers the server off.

    Media and override go first: should the power-off fail, the server still cannot boot this run's
    image again. Each step is tried even when an earlier one failed; returns (done, problems): the
    steps that worked, and for each that did not, the BMC's answer.
    """
    done, problems = [], []

    def step(name, operation):
        try:
            operation()
            done.append(name)
        except Exception as err:
            problems.append("%s: %s" % (name, err if isinstance(err, RedfishError) else describe(err)))

    step("eject the media", lambda: bmc.eject(bmc.cd_slot()["path"], eject_timeout))
    step("clear the boot override", lambda: clear_override(bmc))
    if (bmc.refresh().json.get("Boot") or {}).get("HttpBootUri"):
        step("clear HttpBootUri", lambda: bmc.set_http_boot_uri(""))
    if secure_boot_enabled is not None:
        step("set Secure Boot back as found", lambda: restore_secure_boot(bmc, secure_boot_enabled))
    step("power off", lambda: bmc.power_off(graceful_timeout, power_timeout))
    return done, problems
