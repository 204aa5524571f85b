"""numpy, imported at its first use: 60 to 130 ms that ``--version``,
ia-route without items on its disks, and a reading that looks no key up
do without."""


class _Numpy:

    def __getattr__(self, name):
        import numpy
        value = getattr(numpy, name)
        # Kept here: the next use of the name does not come back.
        setattr(self, name, value)
        return value


np = _Numpy()
