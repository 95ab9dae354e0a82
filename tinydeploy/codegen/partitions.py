"""The partition table of a firmware that keeps its model in flash slots (`render --model-partition`):
ESP-IDF's CSV format (docs: api-guides/partition-tables), with the application, a small state
partition and two model slots, A and B, that the firmware reads in place (esp_partition_mmap).

Alignment: ESP-IDF wants app partitions on 64 KB (0x10000) and data partitions on 4 KB
(0x1000, the flash sector); the model slots are put on 64 KB too, the MMU page that
esp_partition_mmap maps, so the model starts a page. A slot and the state are whole sectors,
so that erasing one never touches its neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.core.errors import BadInput

SECTOR = 0x1000  # SPI flash erase sector
MMU_PAGE = 0x10000  # esp_partition_mmap's page (SPI_FLASH_MMU_PAGE_SIZE) and the app alignment
TABLE_OFFSET = 0x8000  # CONFIG_PARTITION_TABLE_OFFSET's default
STATE_BYTES = 2 * SECTOR  # two copies of the A/B state record, one a sector
# Custom data subtypes (ESP-IDF leaves data subtypes from 0x40 to the application).
SUBTYPES = {"td_state": 0x40, "model_a": 0x41, "model_b": 0x42}
SLOT_NAMES = {"a": "model_a", "b": "model_b"}
APP_BYTES = 0x180000  # 1.5 MB for the application, as ESP-IDF's "large single app" table gives it
FILE = "partitions.csv"
HEADER_ROOM = 0x1000  # an image's header beside its model, at most (operators, arena figures, labels)


def _up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    subtype: str
    offset: int
    size: int

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "subtype": self.subtype, "offset": self.offset,
                "size": self.size}


def layout(flash_kb: int, image_bytes: int) -> list[Partition]:
    """The partitions: nvs, phy_init, the app (factory), the state and two model slots. Each slot
    holds twice the given image (room for a model that grows), at least one MMU page.

    Raises:
        BadInput: the table does not fit the board's flash.
    """
    slot = _up(max(2 * image_bytes, MMU_PAGE), MMU_PAGE)
    parts = [Partition("nvs", "data", "nvs", 0x9000, 0x5000), Partition("phy_init", "data", "phy", 0xE000, 0x1000),
             Partition("factory", "app", "factory", 0x10000, APP_BYTES)]
    end = 0x10000 + APP_BYTES
    parts.append(Partition("td_state", "data", f"0x{SUBTYPES['td_state']:02x}", end, STATE_BYTES))
    end = _up(end + STATE_BYTES, MMU_PAGE)
    for name in SLOT_NAMES.values():
        parts.append(Partition(name, "data", f"0x{SUBTYPES[name]:02x}", end, slot))
        end += slot
    if end > flash_kb * 1024:
        raise BadInput(f"the model slots (2 × {slot:,} B) and a {APP_BYTES:,} B application end at 0x{end:x}, past "
                       f"the board's {flash_kb} KB of flash; the model is too large for two slots on this board")
    return parts


def csv(parts: list[Partition], banner: str) -> str:
    """ESP-IDF's partition CSV."""
    rows = [f"# {banner}", "# Name, Type, SubType, Offset, Size, Flags"]
    rows += [f"{p.name}, {p.type}, {p.subtype}, 0x{p.offset:x}, 0x{p.size:x}," for p in parts]
    return "\n".join(rows) + "\n"


def read_csv(text: str, where: str = FILE) -> dict[str, Partition]:
    """The partitions of a CSV table as tinydeploy writes it (numbers given, no defaults).

    Raises:
        BadInput: a row without offset or size, or a value that is not a number.
    """
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in (line + ",,,,").split(",")]
        try:
            offset, size = int(fields[3], 0), int(fields[4], 0)
        except ValueError:
            raise BadInput(f"{where} line {number}: offset and size must be numbers ({line!r})") from None
        found[fields[0]] = Partition(fields[0], fields[1], fields[2], offset, size)
    return found


def slots(parts: dict[str, Partition], where: str = FILE) -> dict[str, Partition]:
    """{"a", "b", "state"} -> their partitions, checked for the alignment rules.

    Raises:
        BadInput: a slot missing, or not aligned (a slot to 64 KB, the state to 4 KB).
    """
    wanted = {**{k: v for k, v in SLOT_NAMES.items()}, "state": "td_state"}
    missing = [name for name in wanted.values() if name not in parts]
    if missing:
        raise BadInput(f"{where}: no {', '.join(missing)} partition: render the project with --model-partition")
    out = {key: parts[name] for key, name in wanted.items()}
    for key, part in out.items():
        align = SECTOR if key == "state" else MMU_PAGE
        if part.offset % align or part.size % SECTOR:
            raise BadInput(f"{where}: {part.name} at 0x{part.offset:x} (size 0x{part.size:x}) is not aligned to "
                           f"0x{align:x}")
    return out
