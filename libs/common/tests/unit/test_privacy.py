"""The shared pieces of erasure and export, without I/O: who a body names, how addresses are
compared, pseudonyms and keyed hashes."""

from __future__ import annotations

import uuid

import pytest
from pydantic import TypeAdapter, ValidationError

from closeloop_common.privacy import (
    ErasureByCustomer,
    ErasureByEmail,
    ErasureSubject,
    ExportRequest,
    SubjectIdentifiers,
    address_key,
    keyed_hash,
    pseudonym_of,
)

SUBJECT: TypeAdapter[ErasureSubject] = TypeAdapter(ErasureSubject)
EXPORT: TypeAdapter[ExportRequest] = TypeAdapter(ExportRequest)


def test_a_subject_is_an_address_or_a_customer_id_never_both_nor_neither() -> None:
    assert SUBJECT.validate_python({"email": "a@b.pl"}) == ErasureByEmail(email="a@b.pl")
    assert SUBJECT.validate_python({"customer_id": "c-1"}) == ErasureByCustomer(customer_id="c-1")
    for body in ({"email": "a@b.pl", "customer_id": "c-1"}, {}, {"email": "no address"}):
        with pytest.raises(ValidationError):
            SUBJECT.validate_python(body)


def test_an_export_may_name_the_identifiers_ingest_resolved_but_at_least_one() -> None:
    ids = EXPORT.validate_python({"response_ids": ["r-1"], "emails": ["Anna@Klient.PL"]})
    assert SubjectIdentifiers.of(ids) == SubjectIdentifiers(
        response_ids=("r-1",), emails=("anna@klient.pl",)
    )
    with pytest.raises(ValidationError):
        SubjectIdentifiers()


def test_addresses_are_compared_as_the_notifier_keys_opt_outs() -> None:
    assert address_key(" Anna.Kowalska@KLIENT.example.PL ") == "anna.kowalska@klient.example.pl"
    assert SubjectIdentifiers.of(ErasureByEmail(email="Anna@Klient.pl")).emails == (
        "anna@klient.pl",
    )


def test_pseudonym_and_keyed_hash_are_stable_and_reveal_nothing() -> None:
    erasure_id = uuid.UUID("7d0f2b1c-0000-4000-8000-000000000001")
    assert pseudonym_of(erasure_id) == "erased:7d0f2b1c-0000-4000-8000-000000000001"
    digest = keyed_hash(b"key", "anna@klient.pl")
    assert digest == keyed_hash(b"key", "anna@klient.pl")
    assert digest != keyed_hash(b"other key", "anna@klient.pl")
    assert len(digest) == 64
    assert "anna" not in digest
