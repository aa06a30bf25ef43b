# Disk choice from a hw-inventory report: by serial or WWN, exactly one disk, the error lists the disks.
import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.disks import DiskChoiceError, select_disk

REPORT = {"disks": [
    {"name": "sda", "path": "/dev/sda", "type": "disk", "serial": "SCSI-SERIAL-1", "wwn": "0x5000c500a1b2c3d4"},
    {"name": "nvme0n1", "path": "/dev/nvme0n1", "type": "disk", "serial": "NVME-SERIAL-2", "wwn": None},
    {"name": "sr0", "path": "/dev/sr0", "type": "rom", "serial": "NVME-SERIAL-2", "wwn": None},
    {"name": "vda", "path": "/dev/vda", "serial": "TWIN", "wwn": None},
    {"name": "vdb", "path": "/dev/vdb", "serial": "TWIN", "wwn": None},
]}


def test_by_serial_skips_optical_drives():
    assert select_disk(REPORT, serial="NVME-SERIAL-2")["path"] == "/dev/nvme0n1"


@pytest.mark.parametrize("wwn", ["0x5000c500a1b2c3d4", "5000c500a1b2c3d4", "0X5000C500A1B2C3D4"])
def test_by_wwn_with_or_without_0x(wwn):
    assert select_disk(REPORT, wwn=wwn)["path"] == "/dev/sda"


def test_no_match_lists_the_disks_seen():
    with pytest.raises(DiskChoiceError) as err:
        select_disk(REPORT, serial="NOPE")
    assert str(err.value) == ("no disks match serial NOPE; disks seen: /dev/sda (serial SCSI-SERIAL-1, wwn 0x5000c500a1b2c3d4); "
                              "/dev/nvme0n1 (serial NVME-SERIAL-2, wwn none); /dev/vda (serial TWIN, wwn none); /dev/vdb (serial TWIN, wwn none)")


def test_two_matches_are_refused():
    with pytest.raises(DiskChoiceError, match="^2 disks match serial TWIN"):
        select_disk(REPORT, serial="TWIN")


@pytest.mark.parametrize("serial, wwn", [("", ""), ("A", "0x1")])
def test_exactly_one_of_serial_and_wwn(serial, wwn):
    with pytest.raises(DiskChoiceError, match="set disk_serial or disk_wwn"):
        select_disk(REPORT, serial=serial, wwn=wwn)


def test_the_root_partition_is_the_one_with_the_root_type():
    from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.disks import root_partition
    listing = {"blockdevices": [{"path": "/dev/sda", "parttype": None}, {"path": "/dev/sda1", "parttype": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
                                {"path": "/dev/sda2", "parttype": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"}]}
    assert root_partition(listing, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709") == "/dev/sda2"
    with pytest.raises(DiskChoiceError, match="^0 partitions have the root type b921b045"):
        root_partition(listing, "b921b045-1df0-41c3-af44-4c6f280d3fae")
    listing["blockdevices"].append({"path": "/dev/sda3", "parttype": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"})
    with pytest.raises(DiskChoiceError, match="^2 partitions have the root type"):
        root_partition(listing, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
