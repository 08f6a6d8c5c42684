// Token parsing (ids, vocabulary strings, errors with suggestions) and results files (layout, atomic write).
#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/io/checkpoint.h"
#include "core/io/hdf5.h"
#include "core/io/results.h"
#include "core/io/tokens.h"
#include "core/util/digest_cache.h"
#include "core/util/sha256.h"
#include "tests/support/test_files.h"
#include "tests/support/test_support.h"

using namespace mechscope;

TEST(Tokens, IdsAndStringsMix) {
  auto vocab = default_vocab(12);
  EXPECT_EQ(parse_tokens("5,9,2", vocab, 16), (std::vector<int64_t>{5, 9, 2}));
  EXPECT_EQ(parse_tokens("<bos> x7, 3\n<query>", vocab, 16), (std::vector<int64_t>{1, 7, 3, 4}));
  EXPECT_EQ(parse_tokens("15", vocab, 16), (std::vector<int64_t>{15}));  // a padded row is a valid id
}

TEST(Tokens, ErrorsNameTheToken) {
  auto vocab = default_vocab(12);
  auto err = [&](const std::string& s) {
    try {
      parse_tokens(s, vocab, 16);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("1,16").find("16"), std::string::npos);
  EXPECT_NE(err("<bso>").find("<bos>"), std::string::npos);
  EXPECT_NE(err(" , ").find("no tokens"), std::string::npos);
  EXPECT_NE(err("99999999999999999999").find("too large"), std::string::npos);
}

TEST(Results, LayoutIsReadableAndAtomic) {
  const std::string dir = mechscope::test::scratch_dir();
  ResultsFile rf;
  rf.kind = "forward";
  rf.provenance = {{"checkpoint", "m.h5"}};
  rf.tensors.push_back({"logits", at::arange(6, at::kFloat).view({2, 3}), {"pos", "vocab"}, {{"pos", {"a", "b"}}}});
  rf.tensors.push_back({"blocks.0.attn.hook_pattern", at::ones({2, 2, 2}), {"head", "q_pos", "k_pos"}, nullptr});
  write_results(dir + "/r.h5", rf);
  h5::File f = h5::File::open_read(dir + "/r.h5");
  EXPECT_EQ(h5::read_attr_string(f.id(), "format", "t").value(), kResultsFormat);
  EXPECT_EQ(h5::dataset_shape(f.id(), "logits", "t").dims, (std::vector<int64_t>{2, 3}));
  std::vector<float> v(6);
  h5::read_float(f.id(), "logits", v.data(), "t");
  EXPECT_EQ(v[5], 5.f);
  hid_t ds = H5Dopen2(f.id(), "logits", H5P_DEFAULT);
  EXPECT_EQ(h5::read_attr_string(ds, "axes", "t").value(), "[\"pos\",\"vocab\"]");
  EXPECT_EQ(h5::read_attr_string(ds, "labels_pos", "t").value(), "[\"a\",\"b\"]");
  H5Dclose(ds);
  // Axis names that do not match the rank: refused, nothing left behind.
  rf.tensors.push_back({"bad", at::ones({2}), {"a", "b"}, nullptr});
  EXPECT_THROW(write_results(dir + "/bad.h5", rf), std::runtime_error);
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.h5"));
  for (auto& e : std::filesystem::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos);
}

// The digest cache behind checkpoint provenance: the digest of an unchanged file comes from the cache (a planted
// entry with the file's identity is believed), a rewrite of the same size is noticed (the status-change time moves),
// a corrupt cache is ignored and rewritten, and MECHSCOPE_DIGEST_CACHE=0 turns it off.
TEST(DigestCache, UnchangedFilesAreHashedOnceAndChangedOnesAgain) {
  const std::string dir = mechscope::test::scratch_dir();
  const char* old_xdg = std::getenv("XDG_CACHE_HOME");
  const std::string saved_xdg = old_xdg ? old_xdg : "";
  setenv("XDG_CACHE_HOME", (dir + "/cache").c_str(), 1);
  unsetenv("MECHSCOPE_DIGEST_CACHE");
  const std::string file = dir + "/weights.bin", cache = dir + "/cache/mechscope/digests.json";
  EXPECT_EQ(mechscope::digest_cache_path(), cache);
  mechscope::test::write_all(file, std::string(1000, 'a'));
  EXPECT_EQ(mechscope::sha256_file_cached(file, 0), mechscope::sha256_file(file));
  nlohmann::json j = nlohmann::json::parse(mechscope::test::read_all(cache));
  const std::string real = std::filesystem::canonical(file).string();
  ASSERT_TRUE(j["files"].contains(real));
  // The cache is consulted: an entry planted with the file's identity is what comes back.
  j["files"][real]["sha256"] = std::string(64, 'f');
  mechscope::test::write_all(cache, j.dump());
  EXPECT_EQ(mechscope::sha256_file_cached(file, 0), std::string(64, 'f'));
  // Smaller than min_bytes: hashed every time, whatever the cache says.
  EXPECT_EQ(mechscope::sha256_file_cached(file), mechscope::sha256_file(file));
  // Rewritten with other bytes of the same size: the identity moved, the digest is computed again.
  mechscope::test::write_all(file, std::string(1000, 'b'));
  EXPECT_EQ(mechscope::sha256_file_cached(file, 0), mechscope::sha256_file(file));
  // A corrupt cache is ignored and replaced by a valid one.
  mechscope::test::write_all(cache, "{not json");
  EXPECT_EQ(mechscope::sha256_file_cached(file, 0), mechscope::sha256_file(file));
  EXPECT_NO_THROW(nlohmann::json::parse(mechscope::test::read_all(cache)));
  setenv("MECHSCOPE_DIGEST_CACHE", "0", 1);
  EXPECT_EQ(mechscope::digest_cache_path(), "");
  unsetenv("MECHSCOPE_DIGEST_CACHE");
  if (old_xdg) setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  else unsetenv("XDG_CACHE_HOME");
}

// libcrypto's SHA-256 (the fast path) against our plain FIPS 180-4 code, at every length around the 64-byte blocks
// and the padding boundary, and on a file read in 1 MiB pieces; and the standard's own test vector.
TEST(Sha256, TheFastPathIsThePlainOne) {
  EXPECT_EQ(mechscope::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(mechscope::sha256_hex_reference("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string bytes;
  for (int n = 0; n < 300; ++n) {
    EXPECT_EQ(mechscope::sha256_hex(bytes), mechscope::sha256_hex_reference(bytes)) << n;
    bytes += static_cast<char>((n * 131 + 7) & 0xff);
  }
  std::string big(3 * (1 << 20) + 77, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::string file = mechscope::test::scratch_dir() + "/big.bin";
  mechscope::test::write_all(file, big);
  EXPECT_EQ(mechscope::sha256_file(file), mechscope::sha256_hex_reference(big));
  EXPECT_EQ(mechscope::sha256_file_from(file, 1000), mechscope::sha256_hex_reference(big.substr(1000)));
}
