"""The README's two commands (section "Two commands": the first ```bash block sets up and runs the main job,
the second sets up and runs the tests), printed verbatim: ``python3 .ci/readme_commands.py main|tests``.
Standard library only (CI runs it before any virtual environment exists)."""
import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def readme_commands(text: str) -> dict:
    """{"main": command, "tests": command} from the README text; ValueError naming what is missing."""
    section = re.search(r"^## Two commands\n(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise ValueError("README.md: no '## Two commands' section")
    blocks = re.findall(r"^```bash\n(.*?)\n```", section.group(1), re.S | re.M)
    if len(blocks) != 2 or any("\n" in b for b in blocks):
        raise ValueError(f"README.md: '## Two commands' must hold two one-line bash blocks, found {len(blocks)}")
    return {"main": blocks[0], "tests": blocks[1]}


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) == 2 else ""
    if which not in ("main", "tests"):
        sys.exit("usage: python3 .ci/readme_commands.py main|tests")
    print(readme_commands(README.read_text(encoding="utf-8"))[which])
