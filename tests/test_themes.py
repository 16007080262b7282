"""Theme files, the user's config, and switching themes in the app."""

from __future__ import annotations

import pytest
from textual.app import App

from njtui.ui.config import config_path, load_config, remember_theme, save_config
from njtui.ui.themes import ThemeFileError, bundled_themes_dir, discover_themes, load_theme_file, user_themes_dir
from tests.conftest import njtui
from tests.helpers import make_notebook, open_app


def test_bundled_dark_and_light_themes_load():
    themes = discover_themes()
    assert not themes.errors
    assert themes.themes["njtui-dark"].dark and not themes.themes["njtui-light"].dark
    assert (bundled_themes_dir() / "njtui-dark.toml").exists()


async def test_textual_accepts_every_bundled_theme():
    app = App()
    async with app.run_test():
        for theme in discover_themes().themes.values():
            app.register_theme(theme)
            app.theme = theme.name
            assert app.current_theme.name == theme.name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('name = "x"\nprimary = "#123456"\ndark = \n', ":3:"),
        ('name = "x"\nprimary = "#123456"\nsparkle = true\n', "unknown key 'sparkle'"),
        ('name = "x"\nprimary = "not-a-colour"\n', "is not a colour"),
        ('name = "x"\n', "missing key 'primary'"),
    ],
)
def test_broken_theme_files_are_named_with_the_problem(tmp_path, content, message):
    path = tmp_path / "broken.toml"
    path.write_text(content)
    with pytest.raises(ThemeFileError, match="broken.toml") as error:
        load_theme_file(path)
    assert message in str(error.value)


def test_user_themes_are_discovered_and_broken_ones_reported():
    user_themes_dir().mkdir(parents=True)
    (user_themes_dir() / "mine.toml").write_text('name = "mine"\nprimary = "#ff0000"\ndark = true\n')
    (user_themes_dir() / "bad.toml").write_text("primary = 3\n")
    themes = discover_themes()
    assert "mine" in themes.themes and "njtui-dark" in themes.themes
    assert len(themes.errors) == 1 and "bad.toml" in themes.errors[0]


def test_config_round_trip_keeps_unknown_keys():
    config_path().parent.mkdir(parents=True)
    config_path().write_text('future_setting = 3\n[section]\nkey = "value"\n')
    assert remember_theme("njtui-light") is None
    config = load_config()
    assert config.theme == "njtui-light" and config.extra == {"future_setting": 3, "section": {"key": "value"}}


def test_a_config_that_does_not_parse_is_never_overwritten():
    config_path().parent.mkdir(parents=True)
    config_path().write_text("theme = \n")
    before = config_path().read_bytes()
    config = load_config()
    assert config.error and "config.toml:1" in config.error
    assert remember_theme("njtui-light") is not None
    with pytest.raises(OSError):
        save_config(config)
    assert config_path().read_bytes() == before


async def test_theme_flag_palette_switch_and_memory(tmp_path):
    path = make_notebook(tmp_path, [("a", "python", "1\n")])
    result = njtui(str(path), "--theme", "nope")
    assert result.returncode == 2 and "njtui-light" in result.stderr
    app = open_app(path)
    async with app.run_test() as pilot:
        assert app.theme == "njtui-dark"
        names = [command.name for command in app.notebook_screen.palette_commands()]
        assert "theme: njtui-light" in names
        await app.run_action("switch_theme('njtui-light')")
        await pilot.pause()
        assert app.theme == "njtui-light"
    assert load_config().theme == "njtui-light"
    reopened = open_app(path)
    async with reopened.run_test():
        assert reopened.theme == "njtui-light"


async def test_the_app_runs_with_no_color(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    path = make_notebook(tmp_path, [("a", "python", "print('plain')\n")])
    app = open_app(path)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+r")
        from tests.helpers import wait_for

        await wait_for(pilot, lambda: app.outputs.get("a") is not None and app.outputs["a"].finished, what="the cell")
        assert app.outputs["a"].visible_lines() == [("stdout", "plain")]
