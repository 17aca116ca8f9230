"""The certificate model and the one bundle writer.

A bundle is a directory: ``certificate.json`` (schema 1) and the files it lists with their sha256 (program.py,
and what the proof rests on: surrogate.npz, query.smt2, the strategy's files). ``Certificate`` is the typed
value of certificate.json: what was claimed (``Obligation``s, each with its method), over which domain, about
which circuit. ``Certificate.from_json`` reads a bundle's certificate or raises BundleError; ``write_bundle``
writes a bundle atomically; ``jaxscd.verify.recheck`` re-establishes every claim from the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from jaxscd.circuits.base import sha256_bytes, sha256_text
from jaxscd.domain import Domain, DomainError
from jaxscd.dsl.programs import Both, Program, SaturatedDepth, WindowCount, check_program, from_json, to_json
from jaxscd.errors import BundleError
from jaxscd import outputs

SCHEMA_VERSION = 1
OutputDirError = outputs.OutputDirError  # what check_output_dir raises (defined with the rule, in jaxscd.outputs)


# ------------------------------------------------------------------------------------------------------------
# Domains in certificates


def domain_json(domain: Domain, restriction: bool = False) -> dict:
    """The fields of a domain that its certificate hash covers. ``exhaustive`` and ``restriction`` appear only when
    they depart from the default (so bundles written before they existed keep their hash)."""
    data = {"alphabet": list(domain.alphabet), "min_len": domain.min_len, "max_len": domain.max_len,
            "size": domain.size, "precondition": to_json(domain.precondition) if domain.precondition else None,
            "precondition_text": domain.precondition_text or None}
    if not domain.exhaustive:
        data["exhaustive"] = False  # proved beyond enumeration: no size cap
    if restriction:
        data["restriction"] = True  # the precondition narrows the circuit source's own
    return data


def domain_from_json(data: dict) -> Domain:
    """The domain a certificate describes; ``"exhaustive": false`` marks a domain beyond enumeration."""
    pre = data.get("precondition")
    lengths = (data["min_len"], data["max_len"])
    if not all(type(n) is int for n in lengths):  # as written: 1.7 or "1" is not a length
        raise ValueError(f"domain lengths must be integers, got {list(lengths)}")
    if not isinstance(data["alphabet"], list) or not all(isinstance(a, str) for a in data["alphabet"]):
        raise ValueError(f"domain alphabet must be a list of token names, got {data['alphabet']!r:.80}")
    return Domain(tuple(data["alphabet"]), data["min_len"], data["max_len"],
                  from_json(pre) if pre else None, data.get("precondition_text") or "",
                  exhaustive=data.get("exhaustive", True) is not False)


def canonical_sha256(data) -> str:
    return sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def precondition_text(precondition: Program | None, text: str, alphabet) -> str:
    """A precondition as verify prints it: the program itself (what is checked) and its text (what it says)."""
    if precondition is None:
        return "none (every sequence)"
    ids = ", ".join(f"{i}={name}" for i, name in enumerate(alphabet))
    return f"{precondition!r} over token ids {ids}" + (f" (said: {text!r})" if text else "")


# ------------------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Obligation:
    """One claim of a certificate and how it was established. ``record``: every field as written, the
    strategy-specific ones included (its files, statistics), read by the strategy's re-check."""

    claim: str
    method: str
    verdict: str
    record: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data) -> Obligation:
        if not isinstance(data, dict) or not isinstance(data.get("claim"), str) or \
                not isinstance(data.get("method"), str):
            raise BundleError(f"certificate.json lists an obligation without a claim and a method ({data!r:.80}); "
                              f"the bundle is corrupt")
        return cls(data["claim"], data["method"], str(data.get("verdict")), dict(data))

    def to_json(self) -> dict:
        return self.record | {"claim": self.claim, "method": self.method, "verdict": self.verdict}


@dataclass(frozen=True)
class Certificate:
    """certificate.json as a value. ``domain_record``: the domain block as written (its hash, the number of valid
    inputs or orbits); ``long_context``: the beyond-exhaustion block (strategy, symmetry claim, float margin) or
    None; ``extra``: informational blocks verify does not rest on (tool, surrogate, run, counterexample, purity:
    what the purity check re-ran, which verify re-runs with its own seed)."""

    verdict: str
    circuit_source: dict
    circuit_sha256: str
    classes: tuple
    domain: Domain
    domain_record: dict
    program: Program | None
    obligations: tuple
    files: dict
    long_context: dict | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def restriction(self) -> bool:
        return self.domain_record.get("restriction") is True

    @property
    def domain_hash_ok(self) -> bool:
        return canonical_sha256(domain_json(self.domain, self.restriction)) == self.domain_record.get("sha256")

    def obligation(self, claim: str) -> Obligation | None:
        return next((o for o in self.obligations if o.claim == claim), None)

    @property
    def purity(self):
        """The recorded ``PurityEvidence`` of the circuit's truth table; None for bundles written before it was
        recorded, beyond enumeration, or when the block is not one jaxscd writes."""
        from jaxscd.circuits.purity import PurityEvidence

        return PurityEvidence.from_json(self.extra.get("purity"))

    def to_json(self) -> dict:
        data = {"schema_version": SCHEMA_VERSION, "tool": self.extra.get("tool"), "verdict": self.verdict,
                "circuit": {"source": self.circuit_source, "sha256": self.circuit_sha256,
                            "classes": list(self.classes)},
                "domain": self.domain_record,
                "program": to_json(self.program) if self.program is not None else None,
                "files": dict(self.files), "obligations": [o.to_json() for o in self.obligations]}
        if self.long_context is not None:
            data["long_context"] = self.long_context
        return data | {k: v for k, v in self.extra.items() if k not in data}

    @classmethod
    def from_json(cls, data) -> Certificate:
        """The certificate of a bundle; BundleError ("schema" or "corrupt") when it is not one jaxscd can read."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if type(version) is not int or version != SCHEMA_VERSION:  # not True, not 1.0
            raise BundleError(f"certificate schema_version is {version!r}, this jaxscd reads {SCHEMA_VERSION}; "
                              f"re-create the bundle with this version", "schema")
        files = data.get("files")
        if not isinstance(files, dict):
            raise BundleError("certificate.json has no \"files\" table of sha256 hashes; the bundle is corrupt")
        for name, digest in files.items():
            if (problem := bundle_file_problem(name, digest)) is not None:
                raise BundleError(f"certificate.json lists {name!r}: {problem}; the bundle is corrupt")
        circuit, record = data.get("circuit"), data.get("domain")
        if not isinstance(circuit, dict) or not isinstance(circuit.get("source"), dict) or \
                not isinstance(circuit.get("sha256"), str) or not isinstance(record, dict):
            raise BundleError("malformed bundle: certificate.json lacks its circuit (source, sha256) or its domain; "
                              "re-create it with jaxscd distill --out")
        classes = circuit.get("classes")
        if not (isinstance(classes, list) and len(classes) == 2 and all(isinstance(c, str) for c in classes)):
            raise BundleError(f"certificate.json circuit.classes must be 2 class names, got {classes!r}; the bundle "
                              f"is corrupt")
        raw = data.get("obligations")
        if not isinstance(raw, list):
            raise BundleError("certificate.json has no list of obligations; the bundle is corrupt")
        obligations = tuple(Obligation.from_json(o) for o in raw)
        if len({o.claim for o in obligations}) != len(obligations):
            raise BundleError("certificate.json lists an obligation twice; the bundle is corrupt")
        long_block = data.get("long_context")
        if long_block is not None and not isinstance(long_block, dict):
            raise BundleError("certificate.json long_context is not an object; the bundle is corrupt")
        try:
            domain = domain_from_json(record)
            program = from_json(data["program"]) if data.get("program") else None
            if program is not None:
                check_program(program, domain.n_tokens)
                _check_sizes(program, domain.max_len)
        except (DomainError, ValueError, KeyError, TypeError) as err:
            raise BundleError(f"certificate.json describes no valid domain/program ({err}); the bundle is "
                              f"corrupt") from None
        known = {"schema_version", "verdict", "circuit", "domain", "program", "files", "obligations", "long_context"}
        return cls(str(data.get("verdict")), dict(circuit["source"]), circuit["sha256"], tuple(classes), domain,
                   dict(record), program, obligations, dict(files), long_block,
                   {k: v for k, v in data.items() if k not in known})


def _check_sizes(program: Program, max_len: int) -> None:
    """A window or a depth cap past the domain's longest sequence means nothing more and costs tables of its size
    (a forged 2^20 took minutes): jaxscd never writes one."""
    parts = (program.left, program.right) if isinstance(program, Both) else (program,)
    for part in parts:
        size = part.window if isinstance(part, WindowCount) else part.cap if isinstance(part, SaturatedDepth) else 0
        if size > max_len + 1:
            raise ValueError(f"{type(part).__name__} of size {size} exceeds the domain's longest sequence, {max_len}")


def read_certificate(bundle: Path) -> Certificate:
    """The certificate of the bundle directory ``bundle``, every file it lists present; else BundleError."""
    if not bundle.is_dir():
        raise BundleError(f"bundle directory not found: {str(bundle)!r}", "missing")
    path = bundle / "certificate.json"
    if not path.is_file():
        raise BundleError(f"{str(path)!r} is missing; is {str(bundle)!r} a jaxscd bundle?", "missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # not UTF-8 or JSON, a number past 4300 digits, nested too deep
        raise BundleError(f"certificate.json is not valid JSON ({type(err).__name__}); the bundle is corrupt") \
            from None
    cert = Certificate.from_json(data)
    for name in cert.files:
        if not (bundle / name).is_file():
            raise BundleError(f"{name} is missing from {str(bundle)!r}", "missing")
        if any(p.is_symlink() for p in [bundle / name, *(bundle / name).parents][:len(Path(name).parts)]):
            raise BundleError(f"{name} is a link in {str(bundle)!r}; a bundle holds its files itself")
    return cert


# ------------------------------------------------------------------------------------------------------------
# From a distill result


def certificate(result, circuit_ref: dict, circuit_fingerprint: str, files: dict) -> Certificate:
    """The certificate of a distill result (``jaxscd.pipeline.DistillResult``) whose bundle holds ``files``
    (path -> bytes): its obligations, its domain, and its run block (``result.to_json()``, informational)."""
    from jaxscd import __version__

    domain = domain_json(result.domain, result.restriction)
    record = domain | {"sha256": canonical_sha256(domain)}
    long_block = None
    if result.domain.exhaustive:
        obligations = _exhaustive_obligations(result)
        record["valid"] = result.n_valid
    else:
        obligations, long_block = _beyond_obligations(result)
    surrogate = {"neurons": result.surrogate.n_neurons, "depth": result.surrogate.depth,
                 "obtained_by": result.surrogate_method} if result.surrogate is not None else None
    purity = {"purity": result.purity.to_json()} if result.purity is not None else {}
    return Certificate(result.verdict.value, dict(circuit_ref), circuit_fingerprint, tuple(result.class_names),
                       result.domain, record, result.program, tuple(obligations),
                       {name: sha256_bytes(data) for name, data in files.items()}, long_block,
                       {"tool": f"jaxscd {__version__}", "surrogate": surrogate} | purity | {"run": result.to_json()})


def _exhaustive_obligations(result) -> list:
    from jaxscd.verify.solver import solver_name

    proof = result.proof
    obligations = [Obligation("circuit == surrogate", "exhaustive", "PROVED" if result.surrogate is not None else
                              "UNKNOWN", {"inputs": result.n_valid, "min_margin": result.margin,
                                          "float_error_bound": result.margin_bound})]
    if result.program is not None and result.circuit_program_mismatches is not None:
        obligations.append(Obligation("circuit == program", "exhaustive", "PROVED" if
                                      result.circuit_program_mismatches == 0 else "REFUTED",
                                      {"inputs": result.n_valid, "mismatches": result.circuit_program_mismatches}))
    if proof is not None:
        obligations.append(Obligation("surrogate == program", proof.method, proof.verdict.value,
                                      {"solver": solver_name(), "seconds": round(proof.seconds, 3), "expect": "unsat",
                                       "reason": proof.reason or None} | proof.record))
    if result.spec_mismatches is not None:
        obligations.append(Obligation("circuit == spec", "exhaustive", "PROVED" if result.spec_mismatch_count == 0
                                      else "REFUTED", {"inputs": result.n_valid,
                                                       "mismatches": result.spec_mismatch_count,
                                                       "examples": [result.domain.format(s)
                                                                    for s in result.spec_mismatches]}))
    return obligations


def _beyond_obligations(result) -> tuple[list, dict | None]:
    """circuit == program by a beyond-enumeration strategy, and the block its re-check reads (the strategy, the
    symmetry claim, the float margin, the number of orbits or cubes)."""
    from jaxscd.verify.prove import by_method

    proof = result.proof
    if proof is None:
        return [], None
    strategy = by_method(proof.method)
    block = {"strategy": strategy.name, "symmetry": proof.record.get("symmetry"), "float_margin": result.margin_bound,
             "orbits": proof.record.get("orbits"), "cubes": proof.record.get("cubes")}
    return [Obligation("circuit == program", proof.method, proof.verdict.value,
                       {"seconds": round(proof.seconds, 3), "reason": proof.reason or None} | proof.record)], block


def bundle_files(result) -> dict:
    """path -> bytes of a result's bundle: program.py, surrogate.npz, query.smt2 (the one surrogate == program
    query, for other tools) and what the proof's strategy adds."""
    files = {"program.py": (result.source or "").encode()}
    if result.surrogate is not None:
        files["surrogate.npz"] = result.surrogate.to_bytes()
    if result.proof is not None:
        texts = ({"query.smt2": result.proof.smt2} if result.proof.smt2 else {}) | result.proof.files
        files |= {name: text.encode() for name, text in texts.items()}
    return files


# ------------------------------------------------------------------------------------------------------------
# Writing


def bundle_file_problem(name, digest) -> str | None:
    """Why ``name: digest`` cannot be an entry of a certificate's files (None if it can): a relative path
    inside the bundle, other than certificate.json, with a sha256 hex digest."""
    return outputs.listed_file_problem(name, digest, "certificate.json", "bundle")


def _bundle_files(cert) -> dict | None:
    """The files table of a certificate.json of this schema (None when it is not one)."""
    if not isinstance(cert, dict) or cert.get("schema_version") != SCHEMA_VERSION:
        return None
    return outputs.files_table(cert, "certificate.json")


BUNDLE = outputs.Output("--out", "a jaxscd bundle", "certificate.json", _bundle_files,
                        "a jaxscd certificate of this version")


def check_output_dir(out: str | os.PathLike) -> None:
    """Raise OutputDirError unless ``out`` is new, an empty directory, or a jaxscd bundle recognised completely
    (a certificate.json of this schema, every file it lists present with its recorded sha256, and nothing else),
    which writing replaces; nothing else is ever deleted."""
    outputs.check_output_dir(out, BUNDLE)


def write_bundle(result, out_dir: str | os.PathLike, circuit_ref: dict, circuit_fingerprint: str) -> Path:
    """The bundle of a distill result (exhaustive or beyond), written atomically: into a temporary sibling
    directory, then renamed into place; a previous bundle there is moved aside, put back if anything fails, and
    deleted only once the new one is in place."""
    files = bundle_files(result)
    return _write(Path(out_dir), certificate(result, circuit_ref, circuit_fingerprint, files), files)


def _write(out: Path, cert: Certificate, files: dict) -> Path:
    text = json.dumps(cert.to_json(), indent=2) + "\n"
    return outputs.write_output_dir(out, BUNDLE, files | {"certificate.json": text.encode("utf-8")})
