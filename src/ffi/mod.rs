//! Foreign interfaces: the C ABI (`c`) that .NET P/Invoke and C hosts use. These layers only convert
//! and delegate; the core never imports them.

pub mod c;
