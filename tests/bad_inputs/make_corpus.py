"""Writes the malformed-input corpus beside this file (deterministic; the files are committed).

  python tests/bad_inputs/make_corpus.py

Each file's expected outcome (a clear error, or the documented handling) is listed in
tests/test_bad_inputs.py.
"""
import gzip
import os
import pickle

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))

TEXT = {  # name -> bytes
    "empty.txt": b"",
    "whitespace_only.txt": b"  \n\n\t\n",
    "header_only.csv": b"user,item\n",
    "bom.csv": b"\xef\xbb\xbfuser,item\n1,10\n1,11\n1,12\n",
    "crlf.txt": b"1 10\r\n1 11\r\n1 12\r\n",
    "crlf.csv": b"user,item\r\n1,10\r\n1,11\r\n1,12\r\n",
    "semicolon.csv": b"user;item\n1;10\n1;11\n",
    "tab.csv": b"user\titem\n1\t10\n1\t11\n",
    "three_fields.txt": b"1 10 5\n1 11 4\n",
    "one_field.txt": b"1\n2\n",
    "negative_ids.txt": b"-1 10\n-1 -11\n-1 12\n",
    "zero_ids.txt": b"0 0\n0 1\n0 2\n",
    "huge_ids.txt": b"1 10\n1 1180591620717411303424\n",
    # More fields than the header names: pandas would make the first an index and shift the columns.
    "unnamed_extra_field.csv": b"user,item\n1,10,100\n1,11,101\n2,12,102\n",
    # A quote is part of an id in the text format, never the start of a quoted field spanning lines.
    "quotes.txt": b'1 10\n1 "11\n1 12"\n',
    "header_words.txt": b"user_id item_id\nu1 a\nu1 b\nu2 c\n",  # a header above text ids
    # Day-first dates, out of file order: 10 Jan, 13 Jan, 11 Feb (13/01 fits day-first only).
    "dates_day_first.csv": b"user,item,time\n1,12,11/02/2020\n1,10,10/01/2020\n1,11,13/01/2020\n",
    "dates_ambiguous.csv": b"user,item,time\n1,11,11/02/2020\n1,10,10/01/2020\n",  # either reading fits

    "huge_ids.csv": b"user,item\n1,10\n1,99999999999999999999999\n1,11\n",
    "uint64_ids.csv": b"user,item\n1,18446744073709551615\n1,18446744073709551614\n1,10\n",
    "float_ids.txt": b"1 10\n1 10.5\n",
    "integral_float_ids.txt": b"1 10.0\n1 11.0\n1 12\n",
    "nan_ids.csv": b"user,item\n1,10\n1,NaN\n",
    "missing_id.csv": b"user,item\n1,10\n,11\n",
    "string_ids.txt": b"1 10\n1 abc\n",
    "string_ids.csv": b"user,item\nalice,sku-1\nalice,sku-2\nalice,sku-3\n",
    "mixed_ids.csv": b"user,item\n1,10\n1,a\n1,11\n",
    "bool_ids.csv": b"user,item\nTrue,10\nFalse,11\n",
    "duplicated_columns.csv": b"user,item,item\n1,10,20\n1,11,21\n",
    "missing_column.csv": b"uid,item\n1,10\n",
    "extra_columns.csv": b"user,item,price,user_name\n1,10,3.5,a\n1,11,2.0,a\n1,12,1.0,a\n",
    "one_interaction_users.txt": b"1 10\n2 11\n3 12\n3 13\n3 14\n4 10\n",
    "blank_lines.txt": b"1 10\n\n1 11\n\n\n1 12\n",
    "trailing_spaces.txt": b"1 10 \n1 11  \n1 12\t\n",
    "non_utf8.csv": b"user,item\n1,caf\xe9\n1,10\n",
    "time_nan.csv": b"user,item,time\n1,10,1\n1,11,\n",
    "time_strings.csv": b"user,item,time\n1,10,soon\n1,11,later\n",
    "time_dates.csv": b"user,item,time\n1,12,2020-01-03\n1,10,2020-01-01\n1,11,2020-01-02\n",
    "movielens_short.dat": b"1::10::5\n",
    "movielens_bad_id.dat": b"1::10::5::100\n1::abc::4::101\n",
    "not_gzip.txt.gz": b"1 10\n1 11\n",
    "not_parquet.parquet": b"PAR1 this is not parquet",
    "garbage.pkl": b"\x80\x04 not a pickle at all",
    # Ids are labels: '007' and '7' are two users in every format.
    "leading_zeros.txt": b"007 1\n007 2\n007 3\n7 4\n7 5\n7 6\n",
    "leading_zeros.csv": b"user,item\n007,1\n007,2\n007,3\n7,4\n7,5\n7,6\n",
    "short_line.txt": b"1 10\n1\n1 12\n",
    "minus_zero.txt": b"-0 1\n-0 2\n-0 3\n0 4\n0 5\n0 6\n",  # '-0' is not written as an integer: two users
    "spaced_ids.csv": b"user,item\n 7, 10\n7 ,11\n7,12 \n",  # spaces around a field are layout
    "leading_zeros.dat": b"007::1::5::1\n007::2::5::2\n007::3::5::3\n7::4::5::4\n7::5::5::5\n7::6::5::6\n",
    # A time column that config.data.time_col does not name: used (and logged); two: which one?
    "implicit_time.csv": b"user,item,timestamp\n1,12,3\n1,10,1\n1,11,2\n",
    "two_time_columns.csv": b"user,item,timestamp,date\n1,10,1,2020-01-01\n1,11,2,2020-01-02\n",
    # The text format has no header and no comments: each would be read as an interaction.
    "header.txt": b"user item\n1 10\n1 11\n1 12\n",
    "comment.txt": b"1 10\n# a note\n1 11\n1 12\n",
    "commas.txt": b"1,10\n1,11\n",  # a CSV file given as text
    "non_utf8.txt": b"1 10\n1 11\n1 caf\xe9\n",
}
GZIP_NAMED_TXT = b"1 10\n1 11\n1 12\n"  # gzip content in a file named .txt: read by its bytes


def main():
  for name, content in TEXT.items():
    with open(os.path.join(HERE, name), "wb") as f:
      f.write(content)
  with open(os.path.join(HERE, "gzip_named_txt.txt"), "wb") as f:
    f.write(gzip.compress(GZIP_NAMED_TXT, mtime=0))
  # A gzip file cut in the middle of its stream.
  whole = gzip.compress(b"".join(f"{u} {i}\n".encode() for u in range(1, 50) for i in range(20)), mtime=0)
  with open(os.path.join(HERE, "truncated.txt.gz"), "wb") as f:
    f.write(whole[:len(whole) // 2])
  # One user with 100,000 interactions (and two ordinary users).
  lines = [f"1 {i % 1000}\n" for i in range(100_000)] + ["2 1\n", "2 2\n", "2 3\n", "3 3\n", "3 2\n", "3 1\n"]
  with open(os.path.join(HERE, "long_sequence.txt.gz"), "wb") as f:
    f.write(gzip.compress("".join(lines).encode(), mtime=0))
  # Parquet without the user column.
  pd.DataFrame({"customer": [1, 1], "item": [10, 11]}).to_parquet(os.path.join(HERE, "missing_column.parquet"),
                                                                   index=False)
  # Ids as text in a typed column: '007' and '7' stay two users.
  pd.DataFrame({"user": ["007"] * 3 + ["7"] * 3, "item": [1, 2, 3, 4, 5, 6]}).to_parquet(
      os.path.join(HERE, "leading_zeros.parquet"), index=False)
  # Pickles: a Series instead of a DataFrame; a DataFrame whose list column holds scalars.
  with open(os.path.join(HERE, "series.pkl"), "wb") as f:
    pickle.dump(pd.Series([1, 2, 3]), f, protocol=4)
  with open(os.path.join(HERE, "scalar_lists.pkl"), "wb") as f:
    pickle.dump(pd.DataFrame({"uid": [1, 2], "sid_add_to_cart": [[10, 11, 12], 13]}), f, protocol=4)
  # Lists inside the lists; ints and text mixed, beside an empty list (labels: 7 and '7' are one id).
  with open(os.path.join(HERE, "nested_lists.pkl"), "wb") as f:
    pickle.dump(pd.DataFrame({"uid": [1, 2], "sid_add_to_cart": [[[10, 11], [12]], [13]]}), f, protocol=4)
  with open(os.path.join(HERE, "mixed_lists.pkl"), "wb") as f:
    pickle.dump(pd.DataFrame({"uid": [1, 2], "sid_add_to_cart": [[10, "a", 7], []]}), f, protocol=4)
  with open(os.path.join(HERE, "empty_lists.pkl"), "wb") as f:
    pickle.dump(pd.DataFrame({"uid": [1, 2], "sid_add_to_cart": [[], np.array([], dtype=np.int64)]}), f, protocol=4)


if __name__ == "__main__":
  main()
