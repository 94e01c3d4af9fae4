#include "cloud/state/state.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <thread>

#include "cloud/state/lease_policy.hpp"
#include "cloud/state/sqlite_db.hpp"
#include "util/clock.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

using detail::guarded;
using detail::Statement;
using detail::Transaction;
using util::ExitCode;
using util::make_error;

namespace {

std::vector<LeaseDevice> granted_devices(detail::Database& db, LeaseTicket ticket) {
  Statement query = db.prepare(
      "SELECT device_index, uuid, type, memory_gb FROM lease_devices WHERE seq=?1 ORDER BY device_index");
  query.bind(1, ticket);
  std::vector<LeaseDevice> devices;
  while (query.step()) devices.push_back(LeaseDevice{query.integer(0), query.text(1), query.text(2), query.integer(3)});
  return devices;
}

}  // namespace

util::Result<LeaseTicket> StateStore::enqueue_lease(const std::string& run_id, const std::string& cloud,
                                                    const std::vector<LeaseAlternative>& alternatives) {
  return guarded(dir_, [&]() -> util::Result<LeaseTicket> {
    if (alternatives.empty() || std::any_of(alternatives.begin(), alternatives.end(),
                                            [](const LeaseAlternative& a) { return a.count < 1; })) {
      return make_error(ExitCode::failure,
                        "GPU lease for run " + run_id + ": every alternative must ask for at least 1 GPU; this is a gpurun bug");
    }
    Transaction tx(*db_);
    Statement exists = db_->prepare("SELECT 1 FROM runs WHERE id=?1");
    exists.bind(1, run_id);
    if (!exists.step()) {
      return make_error(ExitCode::usage, "run '" + run_id + "' not found; `gpurun ps --all` lists the runs");
    }
    Statement insert = db_->prepare(
        "INSERT INTO lease_tickets(run_id, cloud, alternatives_json, created_at) VALUES(?1, ?2, ?3, ?4)");
    insert.bind(1, run_id).bind(2, cloud).bind(3, alternatives_to_json(alternatives)).bind(4, util::now_unix_ms()).run();
    LeaseTicket ticket = sqlite3_last_insert_rowid(db_->handle());
    tx.commit();
    return ticket;
  });
}

util::Result<LeaseOutcome> StateStore::try_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory,
                                                 const ExternalUse& external) {
  return guarded(dir_, [&]() -> util::Result<LeaseOutcome> {
    Transaction tx(*db_);
    Statement load = db_->prepare(
        "SELECT cloud, alternatives_json, granted, alternative_index FROM lease_tickets WHERE seq=?1");
    load.bind(1, ticket);
    if (!load.step()) {
      return make_error(ExitCode::failure, "GPU lease " + std::to_string(ticket) +
                                               " no longer exists: it was released, or its run ended or was lost; "
                                               "start the run again");
    }
    LeaseRequest request;
    request.cloud = load.text(0);
    request.alternatives = alternatives_from_json(load.text(1));
    if (load.integer(2) != 0) return LeaseOutcome(LeaseGranted{granted_devices(*db_, ticket), load.integer(3)});
    request.inventory = inventory;
    request.external = external;
    Statement busy = db_->prepare("SELECT device_key FROM lease_devices WHERE cloud=?1");
    busy.bind(1, request.cloud);
    while (busy.step()) request.busy.insert(busy.text(0));
    Statement earlier = db_->prepare(
        "SELECT alternatives_json FROM lease_tickets WHERE cloud=?1 AND granted=0 AND seq<?2 ORDER BY seq");
    earlier.bind(1, request.cloud).bind(2, ticket);
    while (earlier.step()) request.earlier_waiting.push_back(alternatives_from_json(earlier.text(0)));

    LeaseOutcome outcome = decide_lease(request);
    if (const auto* granted = std::get_if<LeaseGranted>(&outcome)) {
      Statement insert = db_->prepare(
          "INSERT INTO lease_devices(cloud, device_key, seq, device_index, uuid, type, memory_gb) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      for (const LeaseDevice& d : granted->devices) {
        insert.reset();
        insert.bind(1, request.cloud).bind(2, device_key(d)).bind(3, ticket).bind(4, d.index).bind(5, d.uuid);
        insert.bind(6, d.type).bind(7, d.memory_gb).run();
      }
      Statement grant = db_->prepare(
          "UPDATE lease_tickets SET granted=1, alternative_index=?2, granted_at=?3 WHERE seq=?1");
      grant.bind(1, ticket).bind(2, granted->alternative_index).bind(3, util::now_unix_ms()).run();
      tx.commit();
    }
    return outcome;
  });
}

util::Result<LeaseOutcome> StateStore::wait_for_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory,
                                                      std::chrono::milliseconds poll,
                                                      const std::function<void(const std::string&)>& on_waiting,
                                                      const std::atomic<bool>* cancelled,
                                                      const std::function<ExternalUse()>& external_use,
                                                      std::chrono::milliseconds external_every) {
  using Clock = std::chrono::steady_clock;
  constexpr auto reconcile_every = std::chrono::milliseconds(500);
  std::optional<Clock::time_point> last_reconcile;
  std::optional<Clock::time_point> last_external;
  ExternalUse external;
  std::string last_reason;
  while (true) {
    if (cancelled && cancelled->load()) {
      return make_error(ExitCode::cancelled, "waiting for GPUs: cancelled");
    }
    if (!last_reconcile || Clock::now() - *last_reconcile >= reconcile_every) {
      if (auto reconciled = reconcile_lost(); !reconciled) return reconciled.error();
      last_reconcile = Clock::now();
    }
    if (external_use && (!last_external || Clock::now() - *last_external >= external_every)) {
      external = external_use();  // a probe of the driver: not on every poll
      last_external = Clock::now();
    }
    auto outcome = try_grant(ticket, inventory, external);
    if (!outcome) return outcome.error();
    const auto* waiting = std::get_if<LeaseWaiting>(&*outcome);
    if (!waiting) return outcome;
    if (waiting->reason != last_reason) {
      last_reason = waiting->reason;
      if (on_waiting) on_waiting(last_reason);
    }
    std::this_thread::sleep_for(poll);
  }
}

util::Result<void> StateStore::release_lease(LeaseTicket ticket) {
  return guarded(dir_, [&]() -> util::Result<void> {
    Transaction tx(*db_);
    Statement devices = db_->prepare("DELETE FROM lease_devices WHERE seq=?1");
    devices.bind(1, ticket).run();
    Statement tickets = db_->prepare("DELETE FROM lease_tickets WHERE seq=?1");
    tickets.bind(1, ticket).run();
    tx.commit();
    return {};
  });
}

util::Result<std::vector<std::pair<LeaseDevice, std::string>>> StateStore::leased_devices(const std::string& cloud) {
  return guarded(dir_, [&]() -> util::Result<std::vector<std::pair<LeaseDevice, std::string>>> {
    Statement query = db_->prepare(
        "SELECT d.device_index, d.uuid, d.type, d.memory_gb, t.run_id FROM lease_devices d "
        "JOIN lease_tickets t ON t.seq = d.seq WHERE d.cloud=?1 ORDER BY d.device_index");
    query.bind(1, cloud);
    std::vector<std::pair<LeaseDevice, std::string>> result;
    while (query.step()) {
      result.emplace_back(LeaseDevice{query.integer(0), query.text(1), query.text(2), query.integer(3)}, query.text(4));
    }
    return result;
  });
}

}  // namespace gpurun::cloud
