#include "cloud/state/leases.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <thread>

#include "cloud/state/sqlite_db.hpp"
#include "cloud/state/state.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

using detail::guarded;
using detail::Statement;
using detail::Transaction;
using util::ExitCode;
using util::make_error;

namespace {

std::string device_key(const LeaseDevice& device) {
  return device.uuid.empty() ? "index:" + std::to_string(device.index) : device.uuid;
}

bool matches(const LeaseDevice& device, const LeaseAlternative& alternative) {
  return (alternative.type.empty() || util::iequals(device.type, alternative.type)) &&
         device.memory_gb >= alternative.min_memory_gb &&
         (alternative.max_memory_gb <= 0 || device.memory_gb <= alternative.max_memory_gb);
}

std::string alternatives_to_json(const std::vector<LeaseAlternative>& alternatives) {
  nlohmann::json list = nlohmann::json::array();
  for (const LeaseAlternative& a : alternatives) {
    list.push_back({{"type", a.type}, {"min_memory_gb", a.min_memory_gb}, {"count", a.count}, {"max_memory_gb", a.max_memory_gb}});
  }
  return list.dump();
}

std::vector<LeaseAlternative> alternatives_from_json(const std::string& text) {
  std::vector<LeaseAlternative> alternatives;
  nlohmann::json list = nlohmann::json::parse(text, nullptr, false);
  if (!list.is_array()) return alternatives;
  for (const auto& item : list) {
    alternatives.push_back(LeaseAlternative{item.value("type", std::string()), item.value("min_memory_gb", 0),
                                            item.value("count", 1), item.value("max_memory_gb", 0)});
  }
  return alternatives;
}

// "4x T4", "1x A100 with >= 80 GB", "1x H100 with 80 GB" (exact) or "1x GPU with 16-24 GB".
std::string describe(const LeaseAlternative& a) {
  std::string text = std::to_string(a.count) + "x " + (a.type.empty() ? std::string("GPU") : a.type);
  if (a.max_memory_gb > 0 && a.max_memory_gb == a.min_memory_gb) {
    text += " with " + std::to_string(a.min_memory_gb) + " GB";
  } else if (a.max_memory_gb > 0) {
    text += " with " + std::to_string(a.min_memory_gb) + "-" + std::to_string(a.max_memory_gb) + " GB";
  } else if (a.min_memory_gb > 0) {
    text += " with >= " + std::to_string(a.min_memory_gb) + " GB";
  }
  return text;
}

struct Candidates {
  std::vector<std::set<std::string>> per_alternative;  // matching devices; empty when too few exist
  std::set<std::string> keys;                          // devices any possible alternative could use
  bool possible(std::size_t i) const { return !per_alternative[i].empty(); }
};

Candidates candidates(const std::vector<LeaseAlternative>& alternatives, const std::vector<LeaseDevice>& inventory) {
  Candidates result;
  for (const LeaseAlternative& a : alternatives) {
    std::set<std::string> keys;
    for (const LeaseDevice& d : inventory) {
      if (matches(d, a)) keys.insert(device_key(d));
    }
    if (a.count < 1 || static_cast<int>(keys.size()) < a.count) keys.clear();
    result.keys.insert(keys.begin(), keys.end());
    result.per_alternative.push_back(std::move(keys));
  }
  return result;
}

bool intersects(const std::set<std::string>& a, const std::set<std::string>& b) {
  return std::any_of(a.begin(), a.end(), [&](const std::string& k) { return b.count(k) > 0; });
}

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
    insert.bind(1, run_id).bind(2, cloud).bind(3, alternatives_to_json(alternatives)).bind(4, now_unix_ms()).run();
    LeaseTicket ticket = sqlite3_last_insert_rowid(db_->handle());
    tx.commit();
    return ticket;
  });
}

util::Result<LeaseOutcome> StateStore::try_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory) {
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
    std::string cloud = load.text(0);
    std::vector<LeaseAlternative> alternatives = alternatives_from_json(load.text(1));
    if (load.integer(2) != 0) return LeaseOutcome(LeaseGranted{granted_devices(*db_, ticket), load.integer(3)});

    Candidates mine = candidates(alternatives, inventory);
    if (mine.keys.empty()) {
      std::vector<std::string> why;
      for (const LeaseAlternative& a : alternatives) {
        long have = std::count_if(inventory.begin(), inventory.end(), [&](const LeaseDevice& d) { return matches(d, a); });
        why.push_back(describe(a) + " asked, " + cloud + " has " + std::to_string(have));
      }
      return LeaseOutcome(LeaseImpossible{util::join(why, "; ")});
    }

    std::set<std::string> busy;
    {
      Statement query = db_->prepare("SELECT device_key FROM lease_devices WHERE cloud=?1");
      query.bind(1, cloud);
      while (query.step()) busy.insert(query.text(0));
    }
    // Earlier waiting tickets go first on the devices they could use: an alternative is blocked
    // while one of them competes for its devices.
    int ahead = 0;
    std::vector<bool> blocked(alternatives.size(), false);
    {
      Statement earlier = db_->prepare(
          "SELECT alternatives_json FROM lease_tickets WHERE cloud=?1 AND granted=0 AND seq<?2 ORDER BY seq");
      earlier.bind(1, cloud).bind(2, ticket);
      while (earlier.step()) {
        Candidates theirs = candidates(alternatives_from_json(earlier.text(0)), inventory);
        if (!intersects(theirs.keys, mine.keys)) continue;
        ++ahead;
        for (std::size_t i = 0; i < alternatives.size(); ++i) {
          if (intersects(theirs.keys, mine.per_alternative[i])) blocked[i] = true;
        }
      }
    }

    for (std::size_t i = 0; i < alternatives.size(); ++i) {
      if (!mine.possible(i) || blocked[i]) continue;
      std::vector<LeaseDevice> free;
      for (const LeaseDevice& d : inventory) {
        if (matches(d, alternatives[i]) && busy.count(device_key(d)) == 0) free.push_back(d);
      }
      if (static_cast<int>(free.size()) < alternatives[i].count) continue;
      std::stable_sort(free.begin(), free.end(), [](const LeaseDevice& a, const LeaseDevice& b) {
        return a.memory_gb != b.memory_gb ? a.memory_gb < b.memory_gb : a.index < b.index;
      });
      free.resize(static_cast<std::size_t>(alternatives[i].count));
      std::sort(free.begin(), free.end(), [](const LeaseDevice& a, const LeaseDevice& b) { return a.index < b.index; });
      Statement insert = db_->prepare(
          "INSERT INTO lease_devices(cloud, device_key, seq, device_index, uuid, type, memory_gb) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      for (const LeaseDevice& d : free) {
        insert.reset();
        insert.bind(1, cloud).bind(2, device_key(d)).bind(3, ticket).bind(4, d.index).bind(5, d.uuid);
        insert.bind(6, d.type).bind(7, d.memory_gb).run();
      }
      Statement grant = db_->prepare(
          "UPDATE lease_tickets SET granted=1, alternative_index=?2, granted_at=?3 WHERE seq=?1");
      grant.bind(1, ticket).bind(2, static_cast<int>(i)).bind(3, now_unix_ms()).run();
      tx.commit();
      return LeaseOutcome(LeaseGranted{std::move(free), static_cast<int>(i)});
    }

    long busy_count = std::count_if(mine.keys.begin(), mine.keys.end(), [&](const std::string& k) { return busy.count(k) > 0; });
    std::string reason = std::to_string(busy_count) + " of " + std::to_string(mine.keys.size()) + " busy";
    if (ahead > 0) reason += ", " + std::to_string(ahead) + (ahead == 1 ? " request" : " requests") + " ahead";
    return LeaseOutcome(LeaseWaiting{reason});
  });
}

util::Result<LeaseOutcome> StateStore::wait_for_grant(LeaseTicket ticket, const std::vector<LeaseDevice>& inventory,
                                                      std::chrono::milliseconds poll,
                                                      const std::function<void(const std::string&)>& on_waiting,
                                                      const std::atomic<bool>* cancelled) {
  using Clock = std::chrono::steady_clock;
  constexpr auto reconcile_every = std::chrono::milliseconds(500);
  std::optional<Clock::time_point> last_reconcile;
  std::string last_reason;
  while (true) {
    if (cancelled && cancelled->load()) {
      return make_error(ExitCode::cancelled, "waiting for GPUs: cancelled");
    }
    if (!last_reconcile || Clock::now() - *last_reconcile >= reconcile_every) {
      if (auto reconciled = reconcile_lost(); !reconciled) return reconciled.error();
      last_reconcile = Clock::now();
    }
    auto outcome = try_grant(ticket, inventory);
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
