#include "data/piece_cache.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>

namespace speedrun::data {

namespace {
uint64_t hash_of(std::string_view piece) { return std::hash<std::string_view>{}(piece); }
}  // namespace

PieceCache::PieceCache(size_t max_entries) : max_entries_(max_entries) {}

bool PieceCache::find(std::string_view piece, std::span<const uint16_t>* ids) const {
  if (entries_ == 0) return false;
  const uint64_t hash = hash_of(piece);
  for (size_t i = first_slot(hash);; i = (i + 1) & (slots_.size() - 1)) {
    const Slot& slot = slots_[i];
    if (slot.key_length == 0) return false;
    if (slot.hash == hash && slot.key_length == piece.size() &&
        std::memcmp(keys_.data() + slot.key_offset, piece.data(), piece.size()) == 0) {
      *ids = std::span<const uint16_t>(ids_.data() + slot.ids_offset, slot.ids_length);
      return true;
    }
  }
}

void PieceCache::insert(std::string_view piece, std::span<const uint16_t> ids) {
  if (piece.empty() || piece.size() > kMaxPieceBytes) return;
  if (slots_.empty()) slots_.resize(std::bit_ceil(max_entries_ * 2));  // allocated on first use
  if (entries_ >= max_entries_) clear();
  const uint64_t hash = hash_of(piece);
  size_t i = first_slot(hash);
  while (slots_[i].key_length != 0) i = (i + 1) & (slots_.size() - 1);
  slots_[i] = Slot{hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(ids_.size()),
                   static_cast<uint16_t>(piece.size()), static_cast<uint16_t>(ids.size())};
  keys_.append(piece);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++entries_;
}

void PieceCache::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  keys_.clear();
  ids_.clear();
  entries_ = 0;
}

}  // namespace speedrun::data
