#include "train/train_state.h"

#include "core/error.h"

namespace speedrun::train {

namespace {

nlohmann::json point_json(const ValPoint& v) {
  return {{"step", v.step}, {"val_loss", v.val_loss}, {"train_time_s", v.train_time_s}};
}

ValPoint point_from(const nlohmann::json& j) {
  return {j.at("step").get<int64_t>(), j.at("val_loss").get<double>(), j.at("train_time_s").get<double>()};
}

}  // namespace

nlohmann::json TrainState::to_json() const {
  nlohmann::json j;
  j["step"] = step;
  j["loader"] = {{"shard", loader.shard},
                 {"shard_file", loader_shard_file},
                 {"offset", loader.offset},
                 {"epoch", loader.epoch},
                 {"batches_served", loader.batches_served}};
  j["train_time_s"] = train_time_s;
  j["last_val_step"] = last_val_step;
  j["val"] = nlohmann::json::array();
  for (const ValPoint& v : val) j["val"].push_back(point_json(v));
  j["first_at_target"] = first_at_target ? point_json(*first_at_target) : nlohmann::json(nullptr);
  j["finished_status"] = finished_status;
  return j;
}

TrainState TrainState::from_json(const nlohmann::json& j, const std::string& where) {
  try {
    TrainState s;
    s.step = j.at("step").get<int64_t>();
    const nlohmann::json& l = j.at("loader");
    s.loader.shard = l.at("shard").get<size_t>();
    s.loader_shard_file = l.at("shard_file").get<std::string>();
    s.loader.offset = l.at("offset").get<int64_t>();
    s.loader.epoch = l.at("epoch").get<int64_t>();
    s.loader.batches_served = l.at("batches_served").get<int64_t>();
    s.train_time_s = j.at("train_time_s").get<double>();
    s.last_val_step = j.at("last_val_step").get<int64_t>();
    for (const nlohmann::json& v : j.at("val")) s.val.push_back(point_from(v));
    if (!j.at("first_at_target").is_null()) s.first_at_target = point_from(j.at("first_at_target"));
    s.finished_status = j.at("finished_status").get<std::string>();
    if (s.step < 0) throw UserError(where + ": the training state has a negative step");
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(where + ": the training state is not what speedrun writes: " + e.what());
  }
}

}  // namespace speedrun::train
