import os
import platform

import pytest

from hm3.core import environment


def test_offline_environment_keeps_what_the_user_set(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    environment.offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "0"


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_memory_is_kept_on_glibc(monkeypatch):
    for variable in environment._MALLOC_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert environment.keep_freed_memory()


def test_the_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not environment.keep_freed_memory()


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(environment.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert not environment.keep_freed_memory()
