from harness.multikernel import mk

KIMAGE = """MK_ID  Type        Start Address   Segments  Mode  Cmdline
-----  ----------  --------------  --------  ----  -------
0      default     0x7f000000      5         file  "console=ttyS0"
1      multikernel 0x101ffd000     4         file  "console=ttyS1 quiet"
"""

IOMEM = """00000000-00000fff : Reserved
00100000-bffdffff : System RAM
  01000000-01ffffff : Kernel code
  40000000-7fffffff : Multikernel Memory Pool
    40000000-5fffffff : web-server
    60000000-60ffffff : database
  80000000-80000fff : something else
fed00000-fed003ff : HPET 0
"""


def test_kimage_rows() -> None:
    rows = mk.parse_kimage(KIMAGE)
    assert rows == [
        mk.Kimage(0, "default", 0x7F000000, 5, "file", "console=ttyS0"),
        mk.Kimage(1, "multikernel", 0x101FFD000, 4, "file", "console=ttyS1 quiet"),
    ]
    assert mk.parse_kimage("No kimages loaded\n") == []


def test_pool_and_its_children() -> None:
    pool = mk.parse_pool(IOMEM)
    assert pool is not None
    assert (pool.region.start, pool.region.size) == (0x40000000, 0x40000000)
    assert [c.name for c in pool.children] == ["web-server", "database"]
    assert pool.free == 0x40000000 - 0x20000000 - 0x01000000
    web = pool.child("web-server")
    assert web is not None and web.contains(0x40000000, 0x20000000)
    assert not web.contains(0x5FFFF000, 0x2000)
    assert mk.parse_pool("00100000-bffdffff : System RAM\n") is None


def test_errno_from_busybox_messages() -> None:
    assert mk.errno_name("cat: write error: Invalid argument") == "EINVAL"
    assert mk.errno_name("rmdir: 'x': Device or resource busy") == "EBUSY"
    assert mk.errno_name("mkctl: load: ENOENT: No such file or directory") == "ENOENT"
    assert mk.errno_name("mkdir: can't create directory 'x': Operation not permitted") == "EPERM"
    assert mk.errno_name("mkctl: exec: ENXIO: No such device or address") == "ENXIO"
    assert mk.errno_name("sh: write error: No such device or address") == "ENXIO"
    assert mk.errno_name("all fine") is None


def test_ping_round_trips() -> None:
    out = (
        "reply from 1: seq=0 size=16 time=512.3 us\n"
        "reply from 1: seq=1 size=16 time=431.0 us\n"
        "rtt min/median/max = 431.0/471.6/512.3 us\n"
    )
    assert mk.parse_ping(out) == [512.3, 431.0]
    assert mk.parse_ping("mkctl: ping: EHOSTDOWN: Host is down\n") == []
