# -*- coding: utf-8 -*-
# The text of a NoCloud seed file (meta-data, user-data, network-config): one YAML dump of the data,
# user-data with the #cloud-config header cloud-init requires.
from __future__ import annotations

import yaml


def _plain(value):
    """Plain Python types (Ansible hands over str and dict subclasses that YAML's safe dumper refuses)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)  # str() would keep Ansible's unsafe subclass
    return value


def nocloud_yaml(data, cloud_config=False):
    text = yaml.safe_dump(_plain(dict(data)), default_flow_style=False, sort_keys=False, width=1000) if data else ""
    return ("#cloud-config\n" if cloud_config else "") + text
