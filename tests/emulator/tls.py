"""A throwaway CA and a certificate for archive.org's hosts, for https mode.

``*.archive.org`` does not cover ``ia800123.us.archive.org`` (a wildcard
stands for one label), hence ``*.us.archive.org`` too.
"""

import ssl

import trustme

HOST_NAMES = ("archive.org", "*.archive.org", "*.us.archive.org", "emulator.invalid")


class TlsIdentity:
    def __init__(self):
        self._ca = trustme.CA(organization_name="iatools archive.org emulator")
        self._cert = self._ca.issue_cert(*HOST_NAMES)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(self.context)
        self.context.set_alpn_protocols(["http/1.1"])

    def write_ca(self, path):
        """Write the CA certificate (PEM) for clients' ``REQUESTS_CA_BUNDLE``."""
        self._ca.cert_pem.write_to_path(str(path))
        return path
