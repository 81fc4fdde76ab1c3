"""The server loads its TLS certificate and key before it says it serves: a wrong file is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.cli.tls import make_self_signed
from farside.server import StartupError, _check_tls


def test_a_good_pair_passes(tmp_path: Path) -> None:
    make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "localhost")
    _check_tls(tmp_path / "cert.pem", tmp_path / "key.pem")


def test_each_wrong_file_is_named(tmp_path: Path) -> None:
    make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "localhost")
    make_self_signed(tmp_path / "other.pem", tmp_path / "other-key.pem", "localhost")
    (tmp_path / "text").write_text("root:x:0:0:root:/root:/bin/bash\n")
    cases = {
        (tmp_path / "text", tmp_path / "text"): f"cannot use {tmp_path / 'text'} as a TLS certificate: it holds no PEM",
        (tmp_path / "cert.pem", tmp_path / "text"): f"cannot use {tmp_path / 'text'} as a TLS key",
        (tmp_path / "cert.pem", tmp_path / "other-key.pem"): "the key does not match the certificate",
        (tmp_path / "cert.pem", tmp_path): "cannot read the TLS files",
    }
    for (cert, key), message in cases.items():
        with pytest.raises(StartupError) as error:
            _check_tls(cert, key)
        assert message in error.value.describe() and "\n" not in error.value.describe()
        assert not error.value.describe().startswith("CANNOT_START")
