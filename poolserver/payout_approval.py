"""An operator's decision on a payment batch the hot-wallet caps held (issue 17).

``approve`` moves a batch from ``awaiting_approval`` to ``pending`` and ``reject`` fails it
(its debits refunded); each writes the batch and a register audit entry (with the operator's
name, the batch's total and why it was held) in **one transaction**, under the audit log's
writer lock, and then a ``payout.approve`` / ``payout.reject`` security-log event. Nothing is
sent here: the payout service's next tick (or ``payouts run-once``) sends a pending batch through
the outbox protocol, which asks the wallet for the batch's comment before it ever sends, so a
kill anywhere after the approval cannot pay twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from payouts.payments import PaymentBatch, PaymentStatus, record_approved, record_failed
from poolserver.register.errors import NotFound, RegisterError
from poolserver.register.repository import RegisterRepository
from poolserver.security.log import NewEvent, SecurityLog
from poolserver.storage.repository import SqlPaymentOutbox

AWAITING = PaymentStatus.AWAITING_APPROVAL.value


def _summary(batch: PaymentBatch) -> dict[str, object]:
    return {
        "status": batch.status.value,
        "total_sats": batch.total_sats,
        "outputs": len(batch.outputs),
        "max_output_sats": max(o.amount_sats for o in batch.outputs),
        "hold_reason": batch.hold_reason,
    }


async def decide(
    engine: AsyncEngine,
    batch_id: str,
    who: str,
    *,
    approve: bool,
    reason: str = "",
    network: str = "regtest",
    at: datetime | None = None,
) -> PaymentBatch:
    """Approve (or reject) held batch ``batch_id``; returns its new state. RegisterError (naming
    the batch) when it does not exist or is not awaiting approval."""
    at = at or datetime.now(UTC)
    outbox = SqlPaymentOutbox(engine)
    repo = RegisterRepository(engine, network=network)
    action = "payout.approve" if approve else "payout.reject"
    async with repo.change(who) as tx:
        conn = await tx.session.connection()
        batch = await outbox.batch_on(conn, batch_id)
        if batch is None:
            raise NotFound("batch", f"no payment batch {batch_id!r}")
        if batch.status is not PaymentStatus.AWAITING_APPROVAL:
            raise RegisterError(
                "batch", f"{batch_id} is {batch.status.value}, not awaiting approval"
            )
        if approve:
            t = record_approved(batch, tx.who, at)
        else:
            if not reason.strip():
                raise RegisterError("reason", "say why the batch is rejected")
            t = record_failed(batch, f"rejected by {tx.who}: {reason.strip()}")
        await outbox.update_batch_on(conn, t.batch, t.entries, from_status=AWAITING)
        new = _summary(t.batch) | ({"approved_by": tx.who} if approve else {"reason": reason})
        await tx.audit(action, f"batch:{batch_id}", _summary(batch), new)
    fields = {"batch": batch_id, **new}
    await SecurityLog(engine).append([NewEvent(at, action, fields, who=tx.who)])
    return t.batch
