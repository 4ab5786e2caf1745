"""Pure clinical rules for Đồng Hành: no I/O, and nothing imported from our other packages."""
