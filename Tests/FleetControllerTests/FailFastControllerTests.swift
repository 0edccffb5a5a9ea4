import FleetController
import FleetCore
import FleetTesting
import Foundation
import Testing

/// Issue 13 at the controller: failures retrying cannot fix end a rollout at once with their cause,
/// repeated failures are one audit row with a count, and readiness says why it is not ready.
@Suite(.serialized) struct FailFastControllerTests {
    @Test func anUnstartableRevisionIsRolledBackAtOnceWithItsCause() async throws {
        // A 60 s deadline: only failing fast can roll back within the wait below.
        let h = Harness([ctlServer("1", replicas: 2, strategy: .rolling, deadline: 60_000)])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        let why = "command /srv/time/bin/time-server is not an executable file"
        await h.driver.setUnstartable("rev-2", why)
        let started = ContinuousClock.now
        await h.source.set([ctlServer("2", replicas: 2, strategy: .rolling, deadline: 60_000)])
        try await waitUntil("rollback", timeout: .seconds(10)) {
            let recorded = await h.store.revisions(server: "time").first { $0.revision == "rev-2" }?.outcome == .rolledBack
            return await h.rolledBackToRev1() && recorded
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        let record = await h.record()
        #expect(record?.failedRevisions == ["rev-2"])
        #expect(record?.message?.contains(why) == true, "\(record?.message ?? "-")")
        let history = await h.store.revisions(server: "time").first { $0.revision == "rev-2" }
        #expect(history?.outcome == .rolledBack)
        #expect(history?.reason?.contains("cannot start: \(why)") == true, "\(history?.reason ?? "-")")
        let audit = await h.store.audit(server: "time", limit: 1000)
        #expect(audit.contains { $0.action == "rollback" && $0.reason.contains(why) })
        // Stays put: more reconciles add no audit rows (no retry of rev-2, nothing repeated).
        let rows = audit.count
        let calls = await h.driver.calls.count
        try await waitUntil("more reconciles") { await h.driver.calls.count > calls + 40 }
        await h.stop()
        #expect(await h.store.audit(server: "time", limit: 1000).count == rows)
        #expect(await h.replicas("rev-2") == 0)
    }

    @Test func aFailureRetriedManyTimesIsOneAuditRowWithACount() async throws {
        // The server arrives only once scaling fails: otherwise the controller's first reconcile can
        // scale it before the failure is set, and nothing is ever retried.
        let h = Harness([])
        await h.driver.setFailing(["scale"])
        await h.source.set([ctlServer("1", replicas: 1, strategy: .rolling)])
        try await waitUntil("retries", timeout: .seconds(20)) { await h.controller.queue.failureCount(.server("time")) >= 6 }
        await h.driver.setFailing([])
        try await waitUntil("recovered", timeout: .seconds(20)) { await h.isStable("rev-1") }
        await h.stop()
        let errors = await h.store.audit(server: "time", limit: 1000).filter { $0.outcome.hasPrefix("error") }
        #expect(errors.count == 1, "\(errors.map(\.reason))")
        #expect((errors.first?.repeats ?? 0) >= 5)
        #expect(errors.first?.lastTime ?? 0 > errors.first?.time ?? .max)
    }

    @Test func readinessSaysWhyItIsNotReady() async throws {
        let h = Harness([ctlServer("1", replicas: 1, strategy: .rolling)])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        try await waitUntil("ready") { await h.controller.readiness().ready }
        // Every action fails: not ready, with the error.
        await h.driver.setFailing(["observe"])
        try await waitUntil("not ready while every reconcile fails", timeout: .seconds(20)) {
            let r = await h.controller.readiness()
            return !r.ready && r.reason.contains("every reconcile is failing") && r.reason.contains("injected failure of observe")
        }
        await h.driver.setFailing([])
        try await waitUntil("ready again", timeout: .seconds(20)) { await h.controller.readiness().ready }
        // The store refuses writes: not ready until it takes them again.
        await h.store.setFailing(DriverError("state.db", "attempt to write a readonly database"))
        try await waitUntil("not ready while the store is unwritable", timeout: .seconds(20)) {
            let r = await h.controller.readiness()
            return !r.ready && r.reason.contains("the rollout store is not writable") && r.reason.contains("readonly database")
        }
        await h.store.setFailing(nil)
        try await waitUntil("ready again", timeout: .seconds(20)) { await h.controller.readiness().ready }
        await h.stop()
    }

    @Test func theRecordOfAServerNeitherDesiredNorRunningIsRemoved() async throws {
        let h = Harness([ctlServer("1", replicas: 1, strategy: .rolling)])
        // A deletion interrupted after the runtime forgot the server but before its record went.
        try await h.store.save(RolloutRecord(server: "ghost", stableRevision: "rev-9", message: "pinned to revision rev-9"))
        try await waitUntil("ghost record removed", timeout: .seconds(20)) { await h.store.record(server: "ghost") == nil }
        await h.stop()
    }
}

@Suite struct WorkQueueBackoffTests {
    @Test func aKeyWaitingOutItsBackoffIsNotRetriedSoonerUnlessSomethingChanged() async throws {
        let clock = ManualClock()
        let q = WorkQueue<String>(clock: clock, maxDelayMs: 30_000)
        #expect(await q.addRateLimited("k") == 5)
        await q.add("k")  // a resync, a probe flip: waits for the retry
        await q.add("k", afterMs: 1)
        #expect(await q.depth == 0)
        await q.add("k", bypassingBackoff: true)  // the catalog changed
        #expect(await q.depth == 1)
        // The delay grows to the bound, and a failure retrying cannot fix waits the bound at once.
        for _ in 0..<20 { _ = await q.addRateLimited("j") }
        #expect(await q.addRateLimited("j") == 30_000)
        #expect(await q.addRateLimited("t", terminal: true) == 30_000)
    }
}
