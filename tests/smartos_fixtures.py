"""The SmartOS tools the zone and kstat tests run: fake vmadm, zoneadm and
kstat (tests/fixtures/smartos/bin), a clock to move, and the inventory on them."""

import os
import shutil

from smartos_telemetry.zones.smartos_vmadm import (
    VmadmInventory,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "smartos")


BIN = os.path.join(FIXTURES, "bin")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Tools:
    """The fixture commands' state directory: what each prints and returns."""

    def __init__(self, directory):
        self.dir = directory

    def answer(self, tool, fixture=None, text=None, rc=0, stderr=None, sleep=None):
        path = os.path.join(self.dir, tool)
        if fixture:
            shutil.copyfile(os.path.join(FIXTURES, fixture), path + ".out")
        elif text is not None:
            with open(path + ".out", "w") as f:
                f.write(text)
        for suffix, value in ((".rc", rc or None), (".stderr", stderr), (".sleep", sleep)):
            if value is None:
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
            else:
                with open(path + suffix, "w") as f:
                    f.write(f"{value}\n")

    def calls(self, tool):
        try:
            with open(os.path.join(self.dir, tool + ".argv")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def path(self, tool):
        return os.path.join(BIN, tool)


def make_inventory(tools, clock, **options):
    return VmadmInventory(vmadm=tools.path("vmadm"), zoneadm=tools.path("zoneadm"),
                          clock=clock, **options)
