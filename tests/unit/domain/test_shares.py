"""Share links over fakes: made once and kept as hashes, opened only while live and with their
password, each view counted (exactly, with max_views), their signed URLs bound to their kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from image_service.domain.errors import RateLimited, RenditionUrlRefused
from image_service.domain.models import ImageRecord, ImageStatus, Principal
from image_service.domain.renditions import RenditionSpec
from image_service.domain.shares import (
    PasswordRequired,
    ShareGone,
    ShareNotFound,
    Shares,
    ShareTarget,
    ShareUrls,
)
from tests.fakes import FakeShareStore
from tests.unit.domain.conftest import Clock

NOW = Clock().now
ALICE = Principal("alice")


class Images:
    def __init__(self, *records: ImageRecord) -> None:
        self.records = {(r.user_id, r.image_id): r for r in records}

    async def get_many(self, keys: list[tuple[str, str]]) -> list[ImageRecord]:
        return [self.records[key] for key in keys if key in self.records]


class NoPages:
    async def album_page(self, *_: object) -> tuple[list[ImageRecord], str | None]:
        return [], None

    async def tag_page(self, *_: object) -> tuple[list[ImageRecord], str | None]:
        return [], None


def _image(image_id: str, status: ImageStatus = ImageStatus.READY) -> ImageRecord:
    return ImageRecord(
        user_id="alice",
        image_id=image_id,
        s3_key=f"images/alice/{image_id}/original",
        content_type="image/jpeg",
        status=status,
        upload_time=NOW,
        updated_at=NOW,
    )


def _shares(*records: ImageRecord) -> tuple[Shares, FakeShareStore, Clock]:
    store, clock = FakeShareStore(), Clock()
    shares = Shares(store, Images(*records), NoPages(), presets=("avatar", "card"), clock=clock)
    return shares, store, clock


async def _make(shares: Shares, **options: object) -> tuple[str, str]:
    defaults: dict[str, object] = {
        "target": ShareTarget(image_ids=("a",)),
        "expires_at": None,
        "ttl": None,
        "password": None,
        "allow_download": False,
        "max_views": None,
        "presets": None,
    }
    share, token = await shares.create(ALICE, None, **{**defaults, **options})  # type: ignore[arg-type]
    return share.share_id, token


async def test_a_link_is_kept_as_a_hash_and_shows_its_ready_images_only() -> None:
    shares, store, _ = _shares(_image("a"), _image("b", ImageStatus.TRASHED))
    _, token = await _make(shares, target=ShareTarget(image_ids=("a", "b")))
    secret = token.split("_", 1)[1]
    assert secret not in repr(store.shares)
    page = await shares.open(token, password=None, client="1.2.3.4", limit=50, cursor=None)
    assert [record.image_id for record in page.images] == ["a"]
    with pytest.raises(ShareNotFound):
        await shares.open(token[:-1] + "x", password=None, client="", limit=50, cursor=None)


async def test_a_link_ends_at_its_expiry_on_revocation_and_after_its_views() -> None:
    shares, _, clock = _shares(_image("a"))
    _, expiring = await _make(shares, ttl=timedelta(hours=1))
    revoked_id, revoked = await _make(shares)
    _, counted = await _make(shares, max_views=2)
    await shares.revoke(ALICE, revoked_id, None)
    with pytest.raises(ShareGone) as gone:
        await shares.open(revoked, password=None, client="", limit=50, cursor=None)
    assert gone.value.code == "share_revoked"
    for _ in range(2):
        await shares.open(counted, password=None, client="", limit=50, cursor=None)
    with pytest.raises(ShareGone) as gone:
        await shares.open(counted, password=None, client="", limit=50, cursor=None)
    assert gone.value.code == "view_limit_reached"
    clock.now = NOW + timedelta(hours=1)
    with pytest.raises(ShareGone) as gone:
        await shares.open(expiring, password=None, client="", limit=50, cursor=None)
    assert gone.value.code == "share_expired"


async def test_a_password_is_checked_and_guesses_are_limited_per_link() -> None:
    shares, _, _ = _shares(_image("a"))
    _, token = await _make(shares, password="open sesame")
    with pytest.raises(PasswordRequired):
        await shares.open(token, password=None, client="", limit=50, cursor=None)
    await shares.open(token, password="open sesame", client="", limit=50, cursor=None)
    with pytest.raises(PasswordRequired):
        await shares.open(token, password="guess", client="a", limit=50, cursor=None)
    refusals = []
    for n in range(12):  # from many addresses: the link's own limit stops them
        try:
            await shares.open(token, password="guess", client=f"c{n}", limit=50, cursor=None)
        except (PasswordRequired, RateLimited) as refused:
            refusals.append(type(refused).__name__)
    # Ten guesses a minute per link, the right one included.
    assert refusals == ["PasswordRequired"] * 8 + ["RateLimited"] * 4


async def test_views_without_a_limit_are_written_in_batches() -> None:
    shares, store, _ = _shares(_image("a"))
    share_id, token = await _make(shares)
    for _ in range(3):
        await shares.open(token, password=None, client="", limit=50, cursor=None)
    assert store.shares[share_id].share.views == 0
    assert (await shares.of_owner(ALICE, None))[0].views == 3  # this process's, shown
    await shares.write_views()
    assert store.shares[share_id].share.views == 3


async def test_delivery_refuses_an_image_outside_the_link_or_not_ready() -> None:
    shares, _, _ = _shares(_image("a"), _image("c"), _image("q", ImageStatus.QUARANTINED))
    share_id, _ = await _make(shares, target=ShareTarget(image_ids=("a", "q")))
    share, record = await shares.for_delivery(share_id, "a")
    assert (share.owner, record.image_id) == ("alice", "a")
    for outside in ("c", "q", "nonesuch"):
        with pytest.raises(ShareNotFound):
            await shares.for_delivery(share_id, outside)


def test_signed_urls_of_one_kind_are_never_valid_as_the_other() -> None:
    urls = ShareUrls((b"k" * 32,), 3600, lambda: NOW)
    spec = RenditionSpec(width=128, height=128, fit="cover", format="auto", quality=None)
    rendition = urls.rendition("0123456789abcdef", _image("a"), spec).split("/")
    _, _, _, share, image, made_from, spec_path, expires, signature = rendition
    assert spec_path.endswith("-gauto"), "a cover crop's gravity is decided when signed"
    assert urls.verify_rendition(share, image, made_from, spec_path, expires, signature)[0] == (
        "0123456789abcdef"
    )
    original = urls.original("0123456789abcdef", "a").split("/")
    _, _, _, share, image, expires, signature = original
    assert urls.verify_original(share, image, expires, signature) == "0123456789abcdef"
    with pytest.raises(RenditionUrlRefused) as refused:
        urls.verify_original(share, image, rendition[7], rendition[8])
    assert refused.value.code == "invalid_signature"
