# -*- coding: utf-8 -*-
# Which disk gets the OS: the one disk of the hw-inventory report whose serial or WWN is the one asked
# for. The inventory's own fields (disks[].type, .serial, .wwn, .path) are the only source, so the
# choice is the same the operator read in the inspection.
from __future__ import annotations


class DiskChoiceError(ValueError):
    """No disk, or more than one, matches; the message lists the disks seen."""


def _norm_wwn(value):
    value = str(value or "").strip().lower()
    return value[2:] if value.startswith("0x") else value


def _describe(disk):
    return "%s (serial %s, wwn %s)" % (disk.get("path") or disk.get("name"), disk.get("serial") or "none", disk.get("wwn") or "none")


def select_disk(inventory, serial="", wwn=""):
    """The inventory entry of the target disk; exactly one of serial and wwn must be given."""
    serial = str(serial or "").strip()
    wwn = str(wwn or "").strip()
    if bool(serial) == bool(wwn):
        raise DiskChoiceError("set disk_serial or disk_wwn (one of them) to say which disk gets the OS")
    disks = [d for d in (inventory or {}).get("disks", []) if d.get("type", "disk") == "disk"]
    if serial:
        matches = [d for d in disks if str(d.get("serial") or "").strip() == serial]
        wanted = "serial " + serial
    else:
        matches = [d for d in disks if d.get("wwn") and _norm_wwn(d.get("wwn")) == _norm_wwn(wwn)]
        wanted = "WWN " + wwn
    if len(matches) != 1:
        seen = "; ".join(_describe(d) for d in disks) or "none"
        raise DiskChoiceError("%s disks match %s; disks seen: %s" % ("no" if not matches else len(matches), wanted, seen))
    return matches[0]


def root_partition(lsblk, type_guid):
    """The one partition of `lsblk -J -o PATH,PARTTYPE <disk>` output whose GPT type is `type_guid`."""
    guid = str(type_guid).lower()
    found = [d.get("path") for d in (lsblk or {}).get("blockdevices", []) if str(d.get("parttype") or "").lower() == guid]
    if len(found) != 1:
        raise DiskChoiceError("%d partitions have the root type %s: the image is not a GPT image with one root partition"
                              % (len(found), guid))
    return found[0]
