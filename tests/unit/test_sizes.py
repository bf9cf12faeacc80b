import pytest

from harness.core import sizes


def test_qemu_sizes_default_to_mib() -> None:
    assert sizes.qemu("512M") == 512 << 20
    assert sizes.qemu("2G") == sizes.qemu("2048") == sizes.qemu("2g") == 2 << 30
    assert sizes.qemu("1.5G") == 1536 << 20
    assert sizes.qemu("65536K") == 64 << 20


@pytest.mark.parametrize("text", ["2X", "0", "0M", "", "G", "-1G", "2 G", "2GG", "1e3"])
def test_qemu_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        sizes.qemu(text)


def test_kernel_sizes_default_to_bytes() -> None:
    assert sizes.kernel("4096") == 4096
    assert sizes.kernel("0x1000") == 4096
    assert sizes.kernel("2G") == 2 << 30
    assert sizes.kernel("512m") == 512 << 20


@pytest.mark.parametrize("text", ["2X", "", "M", "1.5G", "0xG"])
def test_kernel_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        sizes.kernel(text)
