"""Destination disks by free space, for ``ia-route``.  Built on
iatools.contract and iatools.base.
"""
