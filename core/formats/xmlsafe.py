"""Read XML from other tools without letting it reach the network, the disk or all memory.

lxml with resolve_entities=False, no_network=True, huge_tree=False; on top, any DTD or entity
declaration is refused outright (XXE, billion laughs), and a size cap is checked before a
byte is read, so a 2 GB file is named and skipped instead of filling memory.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from core.errors import BadInputError

MAX_XML_BYTES = 64 * 1024 * 1024  # a PAGE file of one page is well under 1 MB; a long ALTO a few MB


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                           dtd_validation=False, remove_comments=True, remove_pis=True)


def parse_xml_file(path: Path, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """The root element of an XML file, or BadInputError saying why it is not read."""
    size = path.stat().st_size
    if size == 0:
        raise BadInputError("the file is empty")
    if size > max_bytes:
        raise BadInputError(f"the file is {size / 1e6:,.0f} MB; XML files over {max_bytes // 2**20} MB are not read")
    return parse_xml_bytes(path.read_bytes())


def parse_xml_bytes(data: bytes) -> etree._Element:
    if not data.strip():
        raise BadInputError("the file is empty")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise BadInputError("refused: the XML declares a DTD or entities (<!DOCTYPE>/<!ENTITY>), "
                            "which could read other files or expand without end")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise BadInputError(f"not well-formed XML ({exc.msg})") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. a UTF-16 file the byte check cannot see
        raise BadInputError("refused: the XML declares a DTD or entities")
    return root


def namespace(root: etree._Element) -> str:
    return etree.QName(root).namespace or ""
