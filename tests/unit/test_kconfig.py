from dataclasses import replace
from pathlib import Path

import pytest

from harness.build import kconfig


def test_parse_reads_set_unset_and_skips_comments() -> None:
    text = '# a comment\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_N=16\n'
    opts = kconfig.parse_text(text, "frag")
    assert {k: o.value for k, o in opts.items()} == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_C": '"x y"',
        "CONFIG_N": "16",
    }
    assert opts["CONFIG_C"].origin == "frag:5"


def test_parse_rejects_garbage_with_location() -> None:
    with pytest.raises(kconfig.ConfigError, match="frag:2"):
        kconfig.parse_text("CONFIG_A=y\nSMP=y\n", "frag")


def test_merge_reports_contradicting_fragments(tmp_path: Path) -> None:
    one = tmp_path / "a.config"
    two = tmp_path / "b.config"
    one.write_text("CONFIG_SMP=y\n")
    two.write_text("# CONFIG_SMP is not set\n")
    with pytest.raises(kconfig.ConfigError, match=r"CONFIG_SMP is y in .*a\.config:1 but n in"):
        kconfig.merge_fragments([one, two])


def test_missing_names_each_dropped_option() -> None:
    wanted = kconfig.parse_text("CONFIG_A=y\nCONFIG_NR=8\n# CONFIG_C is not set\n", "f")
    final = "CONFIG_A=y\nCONFIG_NR=4\nCONFIG_C=y\n"
    problems = kconfig.missing(wanted, final)
    assert problems == [
        "CONFIG_NR=8 (from f:2) ended up CONFIG_NR=4",
        "CONFIG_C=n (from f:3) ended up CONFIG_C=y",
    ]


def test_missing_treats_absent_as_n() -> None:
    wanted = kconfig.parse_text("CONFIG_A=y\n# CONFIG_B is not set\n", "f")
    assert kconfig.missing(wanted, "# CONFIG_A is not set\n") == [
        "CONFIG_A=y (from f:1) ended up CONFIG_A=n"
    ]


def test_render_round_trips() -> None:
    opts = kconfig.parse_text("CONFIG_A=y\n# CONFIG_B is not set\n", "f")
    assert kconfig.parse_text(kconfig.render(opts), "r").keys() == opts.keys()
    assert kconfig.render(opts) == "CONFIG_A=y\n# CONFIG_B is not set\n"


def test_repository_fragments_ask_for_what_later_issues_need() -> None:
    from harness.build.kernel import fragments

    wanted = kconfig.merge_fragments(fragments())
    for name in (
        "CONFIG_SMP",
        "CONFIG_HOTPLUG_CPU",
        "CONFIG_KEXEC_FILE",
        "CONFIG_OF",
        "CONFIG_OF_FLATTREE",
        "CONFIG_LIBFDT",
        "CONFIG_SERIAL_8250_CONSOLE",
        "CONFIG_MAGIC_SYSRQ",
        "CONFIG_KALLSYMS",
        "CONFIG_PRINTK_TIME",
    ):
        assert wanted[name].value == "y", name
    assert int(wanted["CONFIG_NR_CPUS"].value) >= 8
    assert int(wanted["CONFIG_SERIAL_8250_RUNTIME_UARTS"].value) >= 2


def test_the_debug_build_adds_its_fragment_and_its_own_cache_key(tmp_path: Path) -> None:
    from harness.build import kernel
    from harness.build.source import KernelSource

    plain = kernel.fragments()
    debug = kernel.fragments(variants=("debug",))
    assert [f.name for f in debug[len(plain) :]] == ["debug.config"]
    wanted = kconfig.merge_fragments(debug)
    for option in ("CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_DEBUG_ATOMIC_SLEEP"):
        assert wanted[option].value == "y"
    src = KernelSource(tmp_path, "6.12.0", "test", "fingerprint")
    assert kernel.cache_key(src) != kernel.cache_key(replace(src, variants=("debug",)))


def test_debug_kernel_from_the_environment_and_refused_for_a_prebuilt(tmp_path: Path) -> None:
    from harness.build import images
    from harness.core.errors import InfraError

    assert images.kernel_choice(env={"MKH_DEBUG_KERNEL": "1"}).variants == ("debug",)
    assert images.kernel_choice(env={"MKH_DEBUG_KERNEL": "0"}).variants == ()
    fake = tmp_path / "bzImage"
    fake.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 64)
    with pytest.raises(InfraError, match="--debug-kernel cannot apply to a prebuilt"):
        images.kernel_choice(prebuilt=fake, debug=True, env={})
    assert images.kernel_choice(prebuilt=fake, env={"MKH_DEBUG_KERNEL": "1"}).variants == ()


def test_a_fragment_applies_only_to_a_tree_with_the_file_it_requires(tmp_path: Path) -> None:
    from harness.build import kernel

    names = [f.name for f in kernel.fragments()]
    by_name = {f.name: f for f in kernel.fragments()}
    # The fault-injection knobs arrive late in the series: its earlier
    # commits build without them (mkh series-check).
    assert kernel.requirement(by_name["multikernel-debug.config"]) == "kernel/multikernel/debug.c"
    (tmp_path / "kernel/multikernel").mkdir(parents=True)
    (tmp_path / "kernel/multikernel/Kconfig").write_text("")
    partial = [f.name for f in kernel.fragments(tmp_path)]
    assert "multikernel.config" in partial and "multikernel-debug.config" not in partial
    (tmp_path / "kernel/multikernel/debug.c").write_text("")
    assert [f.name for f in kernel.fragments(tmp_path)] == names
