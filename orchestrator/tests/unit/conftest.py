# The collection is imported as ansible_collections.uki_on_demand.baremetal through .collections/ (a
# link to the collection root), by Ansible's own collection loader, as ansible-test sets it up: once a
# test imports an Ansible plugin base class, that loader owns every ansible_collections import anyway.
import os

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

_AnsibleCollectionFinder(paths=[os.path.join(os.path.dirname(__file__), "..", "..", ".collections")])._install()


def pytest_configure(config):
    # Ansible's plugin loader says so when it meets the finder installed above: expected here.
    config.addinivalue_line("filterwarnings", "ignore:AnsibleCollectionFinder has already been configured")
