"""xenapid's stand-in for sm's `VDI`: the base class SM drivers extend (plugins only import it)."""


class VDI:
    """A virtual disk of an SR."""

    def __init__(self, sr, uuid):
        self.sr = sr
        self.uuid = uuid
        self.location = uuid
        self.size = 0
        self.utilisation = 0
        self.hidden = False
        self.sm_config = {}
